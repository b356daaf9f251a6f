"""Compliance screening warns (never refuses) on quotas, zero quotas, reservations and box 11a."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from epix.cli.main import cli
from epix.compliance import has_reservation, screen_permit
from epix.compliance.quotas import Quota, QuotaIndex, quota_index, quotas
from epix.errors import ERROR_TABLE, EpixError, Finding, Severity
from epix.exchange.envelope import Envelope
from epix.exchange.service import check_document
from epix.permits.model import Address, DocumentRef, Permit, TradeParty
from epix.permits.reservations import reservations_in_force
from epix.permits.rules import check_rules
from epix.permits.samples import demo_permit
from epix.permits.sapi_dates import taxon_key
from epix.permits.writer import write_permit
from epix.settings import Settings
from tests.permits.helpers import change, change_line, validate

ISSUED = date(2024, 3, 1)


def exported_from(country: str, *, issued: date = ISSUED, **line: object) -> Permit:
    permit = demo_permit(issued=issued, lines=1, exporter_country=country)
    exporter = TradeParty(name="Exporter", address=Address(country=country))
    cleared = change_line(permit, quota_used=None, annual_quota=None, quota_unit=None)
    return change_line(change(cleared, exporter=exporter), **line)


def codes(permit: Permit) -> list[str]:
    return [finding.code for finding in screen_permit(permit)]


def test_demo_permit_raises_no_compliance_warning() -> None:
    assert screen_permit(demo_permit(issued=ISSUED)) == []


def test_zero_quota_is_flagged() -> None:
    permit = exported_from("MX", scientific_name="Crocodylus acutus", source="W")
    assert codes(permit) == ["EPIX-COMP-002"]
    assert codes(exported_from("MX", scientific_name="Crocodylus acutus", source="C")) == []


def namibian_leopards(quantity: int, **box_11a: object) -> list[str]:
    """Leopard trophies hunted in Namibia (published CoP quota: 250 a year)."""
    line = {"scientific_name": "Panthera pardus", "term": "TRO", "unit": "NAR"}
    permit = exported_from("NA", quantity=Decimal(quantity), **line)
    return codes(change(change_line(permit, **box_11a), purpose="H"))


def test_trade_over_a_published_quota_is_flagged() -> None:
    assert namibian_leopards(2) == []
    assert namibian_leopards(251) == ["EPIX-COMP-001"]
    over = {"quota_used": Decimal(251), "annual_quota": Decimal(250), "quota_unit": "NAR"}
    assert namibian_leopards(2, **over) == ["EPIX-COMP-001", "EPIX-COMP-001"]


def test_box_11a_total_exported_includes_this_permit() -> None:
    # Res. Conf. 12.3 (Rev. CoP19), Annex 2, box 11a: the total exported in the current year
    # *including* the specimens on this permit, and the annual quota. The last 2 of Namibia's
    # 250 leopards are "250/250": within the quota, not 250 + 2.
    last = {"quota_used": Decimal(250), "annual_quota": Decimal(250), "quota_unit": "NAR"}
    assert namibian_leopards(2, **last) == []
    # A total below this permit's own quantity cannot include it.
    short = {"quota_used": Decimal(1), "annual_quota": Decimal(250), "quota_unit": "NAR"}
    assert namibian_leopards(2, **short) == ["EPIX-COMP-004"]


def test_box_11a_in_another_unit_is_not_added_to_the_line() -> None:
    # An annual quota of 5,000 kg with 4,900 kg used says nothing about 150 skins (NAR).
    permit = demo_permit(issued=ISSUED, lines=1)
    in_kilograms = change_line(
        permit, quota_used=Decimal(4900), annual_quota=Decimal(5000), quota_unit="KGM"
    )
    assert codes(in_kilograms) == []


def test_a_quota_in_specimens_against_a_permit_in_kilograms_is_named_not_skipped() -> None:
    # Namibia's quota counts leopards; 90 kg of trophies cannot be checked against it.
    leopard = {"scientific_name": "Panthera pardus", "term": "TRO", "unit": "KGM"}
    in_kilograms = change(exported_from("NA", quantity=Decimal(90), **leopard), purpose="H")
    assert screen_permit(in_kilograms) == [
        Finding(
            "EPIX-COMP-005",
            "Line 1: Panthera pardus from NA: the published export quota of 250 specimens "
            "(quota set by the Conference of the Parties; purpose H/P, term SKI/TRO; from "
            "1997-06-10) cannot be checked against 90 KGM; check the year's exports by hand.",
            "/CITESEPermit/SpecifiedSupplyChainConsignment/IncludedSupplyChainConsignmentItem[1]"
            "/TransportLogisticsPackage/ItemQuantity",
        )
    ]
    # Box 11a's total in specimens is what the quota is checked against.
    counted = change_line(
        in_kilograms, quota_used=Decimal(12), annual_quota=Decimal(250), quota_unit="NAR"
    )
    assert codes(counted) == []
    assert codes(change_line(counted, quota_used=Decimal(260))) == ["EPIX-COMP-001"] * 2


def test_inconsistent_box_11a_is_flagged() -> None:
    permit = demo_permit(issued=ISSUED, lines=1)
    assert codes(change_line(permit, quota_used=Decimal(160), annual_quota=Decimal(150))) == [
        "EPIX-COMP-001"
    ]
    assert codes(change_line(permit, quota_used=Decimal(-1), annual_quota=Decimal(150))) == [
        "EPIX-COMP-004"
    ]
    assert codes(change_line(permit, annual_quota=Decimal(5000), quota_used=None)) == [
        "EPIX-COMP-004"
    ]
    full = change_line(permit, quota_used=Decimal(5000), annual_quota=Decimal(5000))
    assert codes(full) == []


def test_exporter_reservation_is_flagged() -> None:
    permit = exported_from("NO", scientific_name="Balaenoptera acutorostrata")
    assert "EPIX-COMP-003" in codes(permit)


def test_every_screening_code_is_a_warning() -> None:
    for code in (f"EPIX-COMP-00{number}" for number in range(1, 6)):
        assert ERROR_TABLE[code].severity is Severity.WARNING


def test_has_reservation_respects_party_taxon_and_dates() -> None:
    assert has_reservation("NO", "Balaenoptera acutorostrata", None, date(2024, 1, 1))
    assert not has_reservation("XA", "Balaenoptera acutorostrata", None, date(2024, 1, 1))
    assert not has_reservation("NO", "Python reticulatus", None, date(2024, 1, 1))
    # Austria's reservation on Equus africanus ran 1983-07-29 to 1989-01-06.
    assert has_reservation("AT", "Equus africanus", None, date(1985, 1, 1))
    assert not has_reservation("AT", "Equus africanus", None, date(1990, 1, 1))


def test_a_subspecies_the_table_lists_apart_meets_only_its_own_quotas() -> None:
    # "Saiga borealis" and "Saiga borealis mongolica" are both zero quotas for every Party: the
    # subspecies, listed on its own, meets its own quota, not its species' as well.
    permit = exported_from("MN", scientific_name="Saiga  borealis mongolica", source="W")
    (zero,) = screen_permit(permit)
    assert zero.code == "EPIX-COMP-002"
    assert zero.message.startswith("Line 1: Saiga  borealis mongolica from MN: a zero export")
    assert [quota.taxon for quota in quota_index().covering(**_wild_saiga(permit))] == [
        "Saiga borealis mongolica"
    ]
    assert codes(exported_from("MN", scientific_name="Saiga borealis", source="W")) == [
        "EPIX-COMP-002"
    ]
    assert codes(exported_from("MN", scientific_name="Saiga borealisx", source="W")) == []


def test_a_name_matches_whatever_its_letter_case() -> None:
    # Box 7 is free text: a permit typed in capitals or lower case names the same taxon, and
    # the zero quotas for wild Saiga (every Party) and Norway's reservation still apply.
    for name in ("SAIGA BOREALIS", "saiga borealis", "Saiga Borealis Mongolica"):
        assert "EPIX-COMP-002" in codes(exported_from("MN", scientific_name=name, source="W"))
    assert has_reservation("NO", "BALAENOPTERA ACUTOROSTRATA", None, date(2024, 1, 1))
    assert has_reservation("NO", "balaenoptera acutorostrata", None, date(2024, 1, 1))
    assert codes(exported_from("NO", scientific_name="balaenoptera acutorostrata")) == [
        "EPIX-COMP-003"
    ]


def test_every_quota_in_force_for_the_same_exporter_and_taxon_is_checked() -> None:
    # Ethiopia's leopard quota was 500 until 2023-02-23 and 20 from that day: both apply on it.
    def leopards(count: int, issued: date) -> list[str]:
        permit = exported_from(
            "ET",
            issued=issued,
            scientific_name="Panthera pardus",
            term="TRO",
            unit="NAR",
            quantity=Decimal(count),
        )
        return codes(change(permit, purpose="H"))

    assert leopards(600, date(2023, 2, 23)) == ["EPIX-COMP-001", "EPIX-COMP-001"]
    assert leopards(30, date(2023, 2, 23)) == ["EPIX-COMP-001"]
    assert leopards(30, date(2022, 6, 1)) == []
    assert leopards(30, date(2024, 6, 1)) == ["EPIX-COMP-001"]


def test_party_quotas_by_year_and_source_sit_beside_the_quota_for_every_party() -> None:
    # South Africa: 800 captive-bred lion skeletons in 2017 and in 2018; wild ones: zero, anywhere.
    def lions(source: str, issued: date) -> list[str]:
        line = {"scientific_name": "Panthera leo", "term": "SKE", "unit": "NAR"}
        return codes(
            exported_from("ZA", issued=issued, source=source, quantity=Decimal(900), **line)
        )

    assert lions("C", date(2017, 6, 1)) == ["EPIX-COMP-001"]
    assert lions("C", date(2018, 6, 1)) == ["EPIX-COMP-001"]
    assert lions("C", date(2019, 6, 1)) == []
    assert lions("W", date(2018, 6, 1)) == ["EPIX-COMP-002"]


_ANY_QUOTA = Quota(
    kind="test",
    taxon="",
    rank="SPECIES",
    party=None,
    quota=Decimal(10),
    unit=None,
    terms=None,
    sources=None,
    purposes=None,
    start=None,
    end=None,
    notes="",
)


def _quota(taxon: str, party: str | None, rank: str = "SPECIES", **changes: Any) -> Quota:
    return dataclasses.replace(_ANY_QUOTA, taxon=taxon, party=party, rank=rank, **changes)


def _scan(table: tuple[Quota, ...], **trade: Any) -> list[Quota]:
    """The quotas covering the trade, row by row: of those listed under the longest name that
    any row in force gives the taxon (for any Party), as a subspecies listed apart has only
    its own quotas."""
    naming = [quota for quota in table if quota.names(trade["taxon"], trade["at"])]
    longest = max((len(taxon_key(quota.taxon).split()) for quota in naming), default=0)
    return [
        quota
        for quota in table
        if quota.covers(**trade) and len(taxon_key(quota.taxon).split()) == longest
    ]


def test_the_quota_index_finds_exactly_what_a_scan_of_the_table_finds() -> None:
    table = (
        _quota("Panthera pardus", "NA", terms=frozenset({"TRO"}), notes="first"),
        _quota("Panthera", None, "GENUS"),
        _quota("Panthera pardus", "NA", terms=frozenset({"SKI"}), end=date(2010, 1, 1)),
        _quota("Panthera pardus orientalis", None, "SUBSPECIES"),
        _quota("Panthera pardus", None, sources=frozenset({"W"})),
        _quota("Panthera", "ZA"),  # a one-word species listing covers names starting with it
        _quota("Panthera", "NA", " genus "),
        _quota("Panthera pardus", None, "GENUS"),  # a genus is one word: never matches
        _quota("Felidae", None, "FAMILY"),
        _quota("panthera pardus", None),
        _quota("Panthera pardus", "NA", start=date(2010, 1, 1), purposes=frozenset({"H"})),
        _quota("", None),
        _quota("Panthera pardus", "ZA", kind="Listing_annotations"),
    )
    index = QuotaIndex(table)
    names = (
        "Panthera pardus",
        "Panthera pardus orientalis",
        " Panthera  pardus\torientalis ",
        "Panthera",
        "Panthera leo",
        "Pantherapardus",
        "Panthera pardusx",
        "panthera pardus",
        "Felidae",
        "",
    )
    found = 0
    for exporter, taxon, appendix, term, source, purpose, at in itertools.product(
        ("NA", "ZA", "XA", "na"),
        names,
        ("I", "II"),
        ("TRO", "SKI", None),
        ("W", "C"),
        ("H", "T"),
        (date(2005, 1, 1), date(2020, 1, 1)),
    ):
        trade: dict[str, Any] = {"exporter": exporter, "taxon": taxon, "appendix": appendix}
        trade |= {"term": term}
        trade |= {"source": source, "purpose": purpose, "at": at}
        expected = _scan(table, **trade)
        assert index.covering(**trade) == expected, trade
        found += len(expected)
    assert found > 500  # the cases above do match, often several quotas at once


def test_the_published_quota_index_agrees_with_a_scan() -> None:
    table = quotas()
    for quota in table:
        for taxon in (quota.taxon, f"{quota.taxon} ssp", quota.taxon.split()[0]):
            trade: dict[str, Any] = {
                "exporter": quota.party or "XA",
                "taxon": taxon,
                "appendix": "II",
                "term": min(quota.terms or {"TRO"}),
                "source": min(quota.sources or {"W"}),
                "purpose": min(quota.purposes or {"T"}),
                "at": quota.start or ISSUED,
            }
            expected = _scan(table, **trade)
            assert quota_index().covering(**trade) == expected, trade
            assert taxon != quota.taxon or quota in expected
            assert quota_index().covering(**(trade | {"appendix": "I"})) == _scan(
                table, **(trade | {"appendix": "I"})
            )


def test_reservations_are_looked_up_by_exact_party() -> None:
    assert has_reservation("NO", "Balaenoptera acutorostrata acutorostrata", None, date(2024, 1, 1))
    assert not has_reservation("no", "Balaenoptera acutorostrata", None, date(2024, 1, 1))
    assert not has_reservation("", "Balaenoptera acutorostrata", None, date(2024, 1, 1))


def test_a_reservation_the_cites_list_no_longer_holds_is_not_in_force() -> None:
    # Japan's 1980 reservations on the hawksbill subspecies have no withdrawal date in the SAPI
    # table, whose internal note says they are not current on the CITES list of reservations.
    for subspecies in ("Eretmochelys imbricata imbricata", "Eretmochelys imbricata bissa"):
        assert not has_reservation("JP", subspecies, None, date(2024, 1, 1))
    assert has_reservation("CU", "Eretmochelys imbricata", None, date(2024, 1, 1))  # Cuba's stands
    # So wild hawksbill for commercial purposes to Japan is refused, not let through.
    to_japan = change_line(
        change(
            demo_permit(issued=ISSUED, lines=1),
            importer=TradeParty(name="Importer", address=Address(country="JP")),
        ),
        scientific_name="Eretmochelys imbricata imbricata",
        appendix="I",
        source="W",
        import_permit=DocumentRef(id="JP-1", type_code="911"),
    )
    assert "EPIX-RULE-012" in {finding.code for finding in validate(to_japan).findings}


def test_quota_findings_say_where_the_quota_comes_from_and_what_it_limits() -> None:
    """A customs officer reads the finding, not the SAPI table: the quota's origin in words,
    the sources, purposes and terms it limits, its dates, and the annotation without Markdown."""
    bones = exported_from("ZA", scientific_name="Panthera leo", source="W", term="BON", unit="KGM")
    (zero,) = screen_permit(bones)
    assert zero.message.startswith(
        "Line 1: Panthera leo from ZA: a zero export quota applies (quota in the annotation to "
        "the CITES listing; source W, purpose T, term BON/BOP/BPR/CLA/SKE/SKU/TEE; from "
        "2017-01-02). Appendix II: [FAMILY listing Felidae spp.] For Panthera leo (African "
        "populations): a zero annual export quota"
    )
    skeletons = exported_from(
        "ZA",
        issued=date(2017, 6, 1),
        scientific_name="Panthera leo",
        source="C",
        term="SKE",
        unit="NAR",
        quantity=Decimal(900),
    )
    (over,) = screen_permit(skeletons)
    assert over.message.startswith(
        "Line 1: Panthera leo from ZA: 900 exported this year with this permit exceeds the "
        "published export quota of 800 specimens (quota in the annotation to the CITES listing; "
        "source C, term SKE/SKU; from 2017-01-02 until 2017-12-31). Appendix II:"
    )
    assert not any("**" in quota.notes or "_" in quota.label for quota in quotas())


def test_both_partys_reservations_are_named_with_the_stocks_they_leave_out() -> None:
    """Japan and Norway hold reservations on the sei whale since 1981, so EPIX lifts the
    Appendix I rules between them; but neither reservation covers the North Pacific stock, which
    box 7 cannot show. Each Party's reservation is named with its note for the officer."""
    sei_whale = change_line(
        change(
            exported_from("JP", scientific_name="Balaenoptera borealis", appendix="I", source="W"),
            importer=TradeParty(name="Importer", address=Address(country="NO")),
        ),
        term="MEA",
        unit="KGM",
    )
    assert "EPIX-RULE-012" not in {finding.code for finding in validate(sei_whale).findings}
    warnings = screen_permit(sei_whale)
    assert [finding.code for finding in warnings] == ["EPIX-COMP-003"] * 2
    for finding, party in zip(warnings, ("JP (exporter)", "NO (importer)"), strict=True):
        assert finding.message.startswith(
            f"Line 1: {party} holds a reservation for Balaenoptera borealis since 1981-06-06"
        )
        assert "Reservation note: Reservation not applicable to stocks in (A) North Pacific" in (
            finding.message
        )


def two_lines(country: str, first: dict[str, Any], second: dict[str, Any], **permit: Any) -> Permit:
    """An export from ``country`` of two lines, each changed from the demo's first line."""
    exporter = TradeParty(name="Exporter", address=Address(country=country))
    one = exported_from(country, **first).lines[0]
    two = dataclasses.replace(one, line_id="2", **second)
    return change(
        demo_permit(issued=ISSUED, lines=1), exporter=exporter, lines=(one, two), **permit
    )


RHINO_FEET = {"scientific_name": "Diceros bicornis", "term": "FOO", "unit": "NAR", "source": "W"}


def test_lines_under_one_quota_are_summed_before_the_quota_is_compared() -> None:
    # Namibia's black rhino quota is 5 hunting trophies a year (Res. Conf. 13.5). Feet on two
    # lines, 3 and 3, are 6: over the quota, though neither line is over it alone.
    feet = two_lines(
        "NA",
        {**RHINO_FEET, "quantity": Decimal(3)},
        {"quantity": Decimal(3)},
        purpose="H",
    )
    (over,) = screen_permit(feet)
    assert over.code == "EPIX-COMP-001"
    assert over.message.startswith(
        "Lines 1 and 2 (summed): Diceros bicornis from NA: 6 exported this year with this "
        "permit exceeds the published export quota of 5 specimens (quota set by the Conference "
        "of the Parties; purpose H/P, term BOD/FOO/GEN/HOR/SKI/SKU/TRO; from 2004-10-14)."
    )
    assert over.location == (
        "/CITESEPermit/SpecifiedSupplyChainConsignment/IncludedSupplyChainConsignmentItem[1]"
        "/TransportLogisticsPackage/ItemQuantity"
    )
    # 2 and 3 are the quota exactly; a line of horns (another term, same quota) counts too.
    within = change_line(feet, 1, quantity=Decimal(2))
    assert codes(within) == []
    assert codes(change_line(within, 1, term="HOR")) == []
    assert codes(change_line(within, 1, term="HOR", quantity=Decimal(4))) == ["EPIX-COMP-001"]


def test_box_11a_repeated_on_lines_under_one_quota_is_not_added_up() -> None:
    # Box 11a on each line gives the year's total *including this permit*: 250 of Namibia's 250
    # leopards, this permit's 100 and 150 among them. That is within the quota, not 500 or 750.
    leopards = {"scientific_name": "Panthera pardus", "term": "TRO", "unit": "NAR"}
    box_11a = {"quota_used": Decimal(250), "annual_quota": Decimal(250), "quota_unit": "NAR"}
    permit = two_lines(
        "NA",
        {**leopards, **box_11a, "quantity": Decimal(100)},
        {"quantity": Decimal(150)},
        purpose="H",
    )
    assert codes(permit) == []
    # A total of 240 cannot include this permit's 250: the lines' sum is what counts.
    fewer = change_line(change_line(permit, 0, quota_used=Decimal(240)), 1, quota_used=Decimal(240))
    assert "EPIX-COMP-001" not in codes(fewer)
    over = change_line(fewer, 1, quantity=Decimal(151))
    assert [f.message.split(":")[0] for f in screen_permit(over) if f.code == "EPIX-COMP-001"] == [
        "Lines 1 and 2 (summed)"
    ]


def test_lines_in_another_unit_are_named_not_summed() -> None:
    # 3 feet are counted against the 5 trophies; 40 kg of rhino hide cannot be.
    permit = two_lines(
        "NA",
        {**RHINO_FEET, "quantity": Decimal(3)},
        {"term": "SKI", "unit": "KGM", "quantity": Decimal(40)},
        purpose="H",
    )
    assert [(f.code, f.message.split(":")[0]) for f in screen_permit(permit)] == [
        ("EPIX-COMP-005", "Line 2")
    ]


def _wild_saiga(permit: Permit) -> dict[str, Any]:
    line = permit.lines[0]
    return {
        "exporter": "MN",
        "taxon": line.scientific_name,
        "appendix": line.appendix,
        "term": line.term,
        "source": "W",
        "purpose": "T",
        "at": ISSUED,
    }


def test_an_appendix_ii_annotation_quota_does_not_reach_an_appendix_i_subspecies() -> None:
    # The zero quota for wild lion bones, claws, skulls and teeth traded commercially is in the
    # Appendix II annotation (Felidae spp., "African populations"). The Asiatic lion, Panthera
    # leo persica, is listed in Appendix I on its own: that quota is not its quota.
    def lion_skulls(country: str, name: str, appendix: str) -> list[str]:
        line = {"scientific_name": name, "appendix": appendix, "term": "SKU", "source": "W"}
        quota_codes = {"EPIX-COMP-001", "EPIX-COMP-002"}  # India's export ban aside
        return [code for code in codes(exported_from(country, **line)) if code in quota_codes]

    assert lion_skulls("ZA", "Panthera leo", "II") == ["EPIX-COMP-002"]
    assert lion_skulls("IN", "Panthera leo persica", "I") == []
    assert lion_skulls("IN", "Panthera leo persica", "II") == ["EPIX-COMP-002"]
    # A quota the Conference of the Parties set for an Appendix I species still applies.
    leopards = {"scientific_name": "Panthera pardus", "appendix": "I", "term": "TRO"}
    hunted = change(exported_from("NA", quantity=Decimal(251), unit="NAR", **leopards), purpose="H")
    assert codes(hunted) == ["EPIX-COMP-001"]


def _refusals(permit: Permit) -> set[str]:
    found = {f.code for f in check_rules(permit, has_reservation=has_reservation)}
    return found & {"EPIX-RULE-011", "EPIX-RULE-012"}


def test_a_species_the_reservation_note_leaves_out_is_not_reserved() -> None:
    # Switzerland and Liechtenstein held reservations on Discocactus (1992-2014), "not
    # applicable to D. horstii": between them wild D. horstii stayed under Appendix I.
    def cactus(name: str) -> Permit:
        permit = exported_from(
            "CH", issued=date(2010, 5, 1), scientific_name=name, appendix="I", source="W"
        )
        return change(permit, importer=TradeParty(name="Importer", address=Address(country="LI")))

    assert _refusals(cactus("Discocactus placidus")) == set()
    assert _refusals(cactus("Discocactus horstii")) == {"EPIX-RULE-011", "EPIX-RULE-012"}
    warnings = screen_permit(cactus("Discocactus horstii"))
    assert [f.message.split(",")[0] for f in warnings] == [
        "Line 1: CH (exporter) holds a reservation for Discocactus since 1992-06-11",
        "Line 1: LI (importer) holds a reservation for Discocactus since 1992-06-11",
    ]
    assert all(
        "but it does not cover Discocactus horstii: for this specimen" in f.message
        for f in warnings
    )


def test_a_population_the_reservation_note_leaves_out_is_judged_by_origin() -> None:
    # Suriname's reservation on the green turtle is "not applicable to population of AU";
    # Cuba's has no limit. Shells re-exported from Suriname to Cuba: the origin (box 12) decides.
    def shells(origin: str | None) -> Permit:
        permit = exported_from(
            "SR", scientific_name="Chelonia mydas", appendix="I", source="W", term="SHE"
        )
        return change_line(
            change(
                permit,
                document_type="R",
                importer=TradeParty(name="Importer", address=Address(country="CU")),
            ),
            origin_country=origin,
        )

    assert "EPIX-RULE-012" not in _refusals(shells("ID"))
    assert "EPIX-RULE-012" in _refusals(shells("AU"))
    (suriname, _) = screen_permit(shells("AU"))
    assert "does not cover the population of AU: for this specimen SR is bound" in (
        suriname.message
    )
    # Without an origin the permit cannot show the population: the rule is lifted, and said so.
    assert "EPIX-RULE-012" not in _refusals(shells(None))
    (suriname, cuba) = screen_permit(shells(None))
    assert "cannot show whether this specimen is within that limit" in suriname.message
    assert "cannot show" not in cuba.message
    for finding in (suriname, cuba):
        assert finding.message.endswith(
            "so EPIX does not hold this line to the Appendix I rules on the import permit and "
            "the commercial purpose (Art. XXIII.3)."
        )
    assert has_reservation("SR", "Chelonia mydas", "SR", ISSUED)
    assert not has_reservation("SR", "Chelonia mydas", "AU", ISSUED)


def test_a_reservation_for_one_population_only_covers_no_other() -> None:
    # Chile's reservation on Fitzroya cupressoides (1987-2004) was "applicable only to coastal
    # population of CL": a Chilean specimen may be of it (coastal: no box shows), others are not.
    at = date(2000, 1, 1)
    assert has_reservation("CL", "Fitzroya cupressoides", "CL", at)
    assert not has_reservation("CL", "Fitzroya cupressoides", "AR", at)
    (entry,) = reservations_in_force("CL", "Fitzroya cupressoides", at)
    assert entry.doubt("CL") == "only the coastal population of CL"


def test_a_stock_no_box_shows_is_named_when_the_appendix_one_rules_are_lifted() -> None:
    # Norway's and Japan's minke whale reservations are "except stock of west Greenland", which
    # no box of a permit shows: the rules are lifted, and each finding says what to check.
    meat = change(
        exported_from("NO", scientific_name="Balaenoptera acutorostrata", appendix="I", source="W"),
        importer=TradeParty(name="Importer", address=Address(country="JP")),
    )
    assert _refusals(meat) == set()
    for finding in screen_permit(meat):
        assert finding.message.endswith(
            "Reservation note: Except stock of west Greenland. The permit cannot show whether "
            "this specimen is within that limit (Except stock of west Greenland.); EPIX took the "
            "reservation as covering it: check it. Both Parties hold a reservation, so EPIX does "
            "not hold this line to the Appendix I rules on the import permit and the commercial "
            "purpose (Art. XXIII.3)."
        )


def test_a_note_on_the_reservation_s_history_limits_nothing() -> None:
    # "Reservation entered under Balaenoptera acutorostrata" says how Norway's Antarctic minke
    # whale reservation was entered, not what it leaves out.
    (entry,) = reservations_in_force("NO", "Balaenoptera bonaerensis", ISSUED)
    assert entry.doubt(None) == "" and entry.exclusion("Balaenoptera bonaerensis", None) is None


def _elephant_ivory_1995(name: str) -> Permit:
    """Raw ivory of wild elephants for commercial purposes from Botswana to Zimbabwe in 1995,
    without an import permit: UNEP-WCMC's table gives both Parties a reservation on Loxodonta
    africana from 18 January 1990 until September 1997."""
    permit = exported_from(
        "BW", issued=date(1995, 6, 1), scientific_name=name, appendix="I", source="W", term="TUS"
    )
    permit = change(permit, purpose="T", references=())
    return change(permit, importer=TradeParty(name="Importer", address=Address(country="ZW")))


def _submitted(permit: Permit) -> set[str]:
    """The codes the node's submit pipeline finds in ``permit`` (code lists and rules)."""
    envelope = Envelope("m-1", "BW", "ZW", "permit")
    try:
        _, _, findings = check_document(write_permit(permit), envelope, Settings())
    except EpixError as refused:
        findings = list(refused.findings)
    return {finding.code for finding in findings}


@pytest.mark.parametrize(
    "name", ["Loxodonta africana", "Loxodonta cyclotis", "loxodonta  CYCLOTIS"]
)
def test_a_synonym_of_a_taxon_both_parties_reserve_lifts_the_appendix_one_rules(
    name: str, tmp_path: Path
) -> None:
    """Species+ holds Loxodonta cyclotis as a synonym of Loxodonta africana: between two
    Parties reserving the African elephant, box 7's synonym is the same taxon, in the node's
    rules, in ``epix validate`` and in screening's account of them."""
    permit = _elephant_ivory_1995(name)
    appendix_one = {"EPIX-RULE-011", "EPIX-RULE-012"}
    assert appendix_one <= {f.code for f in check_rules(permit, has_reservation=None)}
    assert not appendix_one & _submitted(permit)
    path = tmp_path / "ivory.xml"
    path.write_bytes(write_permit(permit))
    validated = CliRunner().invoke(cli, ["validate", str(path)])
    assert validated.exit_code == 0, validated.output
    named = [f.message for f in screen_permit(permit) if f.code == "EPIX-COMP-003"]
    assert [message.split(" holds ")[0] for message in named] == [
        "Line 1: BW (exporter)",
        "Line 1: ZW (importer)",
    ]
    assert all("Both Parties hold a reservation, so EPIX does not hold" in m for m in named)
    # Zimbabwe's reservation ended on 17 September 1997: Botswana's alone lifts nothing.
    later = change(permit, issued_at=datetime(1997, 9, 18, tzinfo=UTC))
    assert appendix_one & _submitted(later)
