"""The Species+ taxonomy in screening: synonyms, the declared appendix and higher taxa (warnings
only), from the bundled Loxodonta answer and from an operator's directory of answers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from epix.cli.main import cli
from epix.compliance import has_reservation, screen_permit
from epix.compliance import quotas as quota_table
from epix.compliance.quotas import QuotaIndex, load_quotas
from epix.compliance.suspensions import _by_country, load_suspensions, suspensions
from epix.compliance.taxonomy import answer_files, load_taxonomy, taxonomy
from epix.errors import ERROR_TABLE, Finding, Severity
from epix.permits.model import Address, Permit, TradeParty
from epix.permits.rules import check_rules
from epix.permits.sapi_dates import ReferenceDataError, taxon_key
from epix.permits.writer import write_permit
from epix.reports.quota_use import quota_use
from epix.settings import get_settings
from tests.compliance.test_screening import codes, exported_from
from tests.exchange.test_quota_use import exported
from tests.permits.helpers import base, change


def _concept(
    concept_id: int,
    name: str,
    rank: str = "SPECIES",
    *,
    listing: str | None = "II",
    higher: dict[str, str] | None = None,
    synonyms: tuple[str, ...] = (),
    status: str = "A",
) -> dict[str, Any]:
    """One entry shaped as Species+ ``GET /api/v1/taxon_concepts`` gives it."""
    return {
        "id": concept_id,
        "full_name": name,
        "author_year": "",
        "rank": rank,
        "name_status": status,
        "active": True,
        "cites_listing": listing,
        "higher_taxa": higher or {},
        "synonyms": [
            {"id": 900000 + n, "full_name": s, "author_year": "", "rank": rank}
            for n, s in enumerate(synonyms)
        ],
        "common_names": [],
    }


def _answer(folder: Path, name: str, *concepts: dict[str, Any]) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    page = {"current_page": 1, "per_page": 500, "total_entries": len(concepts)}
    path.write_text(json.dumps({"pagination": page, "taxon_concepts": list(concepts)}), "utf-8")
    return path


BIRDS = {"kingdom": "Animalia", "phylum": "Chordata", "class": "Aves"}
PARROT = _concept(
    19100,
    "Cyanoliseus patagonus",
    higher=BIRDS | {"order": "Psittaciformes", "family": "Psittacidae"},
)
TORTOISE = _concept(
    19200,
    "Testudo graeca",
    higher={"kingdom": "Animalia", "class": "Reptilia", "family": "Testudinidae"},
    synonyms=("Testudo ibera",),
)
# Argentina's suspension of exports of live native birds (CITES Notif. No. 2006/006) hangs on
# Species+ taxon 32; an operator's answer naming that id as the class Aves, as the suspension's
# text ("native species of birds") reads, lets the node match it.
AVES = _concept(32, "Aves", "CLASS", listing=None, higher={"kingdom": "Animalia"})


def _clear_caches() -> None:
    get_settings.cache_clear()
    taxonomy.cache_clear()
    suspensions.cache_clear()
    _by_country.cache_clear()


@pytest.fixture
def operator_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """EPIX_SPECIESPLUS_DIR set to an empty directory the test fills before screening."""
    folder = tmp_path / "speciesplus"
    folder.mkdir()
    monkeypatch.setenv("EPIX_SPECIESPLUS_DIR", str(folder))
    _clear_caches()
    yield folder
    monkeypatch.delenv("EPIX_SPECIESPLUS_DIR")
    _clear_caches()


def _found(permit: Permit, code: str) -> list[Finding]:
    return [finding for finding in screen_permit(permit) if finding.code == code]


def _elephant_trophies(name: str) -> Permit:
    """Hunting trophies exported from South Africa to the United States, whose measures on
    African elephant imports (2014) the bundled Species+ answer holds."""
    permit = exported_from("ZA", scientific_name=name, term="TRO", source="W", appendix="II")
    to = TradeParty(name="Importer", address=Address(country="US"))
    return change(permit, purpose="H", importer=to)


def test_a_synonym_meets_the_accepted_names_suspensions_and_is_told_that_name() -> None:
    # Species+ (November 2022) holds Loxodonta cyclotis as a synonym of Loxodonta africana.
    (told,) = _found(_elephant_trophies(" loxodonta   CYCLOTIS "), "EPIX-COMP-007")
    assert told.message == (
        "Line 1: loxodonta CYCLOTIS is a synonym of Loxodonta africana in the CITES taxonomy "
        "(Species+); the line was screened as Loxodonta africana for quotas, reservations and "
        "suspensions."
    )
    suspended = _found(_elephant_trophies("Loxodonta cyclotis"), "EPIX-COMP-006")
    assert len(suspended) == 3
    assert all("of Loxodonta africana" in finding.message for finding in suspended)
    assert _found(_elephant_trophies("Loxodonta africana"), "EPIX-COMP-007") == []
    assert ERROR_TABLE["EPIX-COMP-007"].severity is Severity.WARNING


def test_a_subspecies_written_under_a_synonym_is_screened_under_the_accepted_species() -> None:
    # The forest elephant's subspecies written under Loxodonta cyclotis, which Species+ holds as
    # a synonym of Loxodonta africana: it is the African elephant's, and meets its measures.
    (told,) = _found(_elephant_trophies("Loxodonta  cyclotis PUMILIO"), "EPIX-COMP-007")
    assert told.message == (
        "Line 1: Loxodonta cyclotis PUMILIO: Loxodonta cyclotis is a synonym of Loxodonta "
        "africana in the CITES taxonomy (Species+); the line was screened as Loxodonta africana "
        "pumilio for quotas, reservations and suspensions."
    )
    suspended = _found(_elephant_trophies("Loxodonta cyclotis pumilio"), "EPIX-COMP-006")
    assert len(suspended) == 3
    assert all("Line 1: Loxodonta africana pumilio: " in f.message for f in suspended)
    # A subspecies may be listed apart from its species: its appendix is not checked.
    declared = exported_from("XA", scientific_name="Loxodonta cyclotis pumilio", appendix="III")
    assert _found(declared, "EPIX-COMP-008") == []


def test_an_appendix_the_taxons_listing_does_not_hold_warns() -> None:
    def declared(name: str, appendix: str) -> list[str]:
        permit = exported_from("XA", scientific_name=name, appendix=appendix)
        return [finding.message for finding in _found(permit, "EPIX-COMP-008")]

    assert declared("Loxodonta africana", "III") == [
        "Line 1: box 10 declares Appendix III, but the CITES taxonomy (Species+) lists "
        "Loxodonta africana in Appendix I/II; check the listing in force on the date of issue."
    ]
    assert declared("Loxodonta africana", "I") == []  # "I/II": split listing, both accepted
    assert declared("Loxodonta africana", "II") == []
    assert len(declared("Loxodonta cyclotis", "III")) == 1  # the accepted name's listing
    # A subspecies may be listed apart from its species, and a taxon the node does not hold is
    # not checked at all: no warning is not a clearance.
    assert declared("Loxodonta africana pumilio", "III") == []
    assert declared("Python reticulatus", "I") == []
    assert ERROR_TABLE["EPIX-COMP-008"].severity is Severity.WARNING


def test_the_operators_answers_add_synonyms_listings_and_not_listed_taxa(
    operator_dir: Path,
) -> None:
    unlisted = _concept(19300, "Testudo kleinmanni", listing="NC")
    deleted = {**_concept(19301, "Testudo werneri", listing="NC"), "active": False}
    as_synonym = _concept(19302, "Testudo ibera", status="S", listing=None)
    _answer(operator_dir, "reptiles.json", TORTOISE, unlisted, deleted, as_synonym)
    (told,) = _found(exported_from("XA", scientific_name="Testudo ibera"), "EPIX-COMP-007")
    assert "synonym of Testudo graeca" in told.message
    (warned,) = _found(exported_from("XA", scientific_name="Testudo kleinmanni"), "EPIX-COMP-008")
    assert "lists Testudo kleinmanni in no Appendix (NC)" in warned.message
    assert _found(exported_from("XA", scientific_name="Testudo werneri"), "EPIX-COMP-008") == []
    # The bundled answer is still read beside the operator's.
    assert len(_found(_elephant_trophies("Loxodonta cyclotis"), "EPIX-COMP-007")) == 1


def test_a_suspension_on_a_higher_taxon_the_operators_answers_name_covers_its_taxa(
    operator_dir: Path,
) -> None:
    def live_birds(name: str, country: str = "AR") -> list[str]:
        permit = exported_from(country, scientific_name=name, term="LIV", source="W")
        return [finding.message for finding in _found(permit, "EPIX-COMP-006")]

    assert live_birds("Cyanoliseus patagonus") == []  # id 32 named by no answer: left out
    _answer(operator_dir, "birds.json", AVES, PARROT)
    _clear_caches()
    (warning,) = live_birds("Cyanoliseus patagonus")
    assert warning.startswith(
        "Line 1: Cyanoliseus patagonus: CITES Notif. No. 2006/006, since 2006-01-16 (a "
        "recommendation to suspend trade, Art. XIII and Res. Conf. 14.3), concerns exports "
        'from AR of the class Aves: "The export of all live specimens of native species of birds'
    )
    assert live_birds("Cyanoliseus patagonus", "CL") == []
    assert live_birds("Testudo graeca") == []  # not placed under Aves
    assert live_birds("Psittacus erithacus") == []  # a bird the node cannot place: unknown
    assert len(suspensions()) == 16


# Species+ names a group the way box 7 does for specimens identified no further: the bundled
# answer for taxon 3210 holds its listing as "[FAMILY listing Trochilidae spp.]".
HUMMINGBIRDS = _concept(19110, "Trochilidae", "FAMILY", higher=BIRDS | {"order": "Apodiformes"})


def test_a_line_naming_a_family_spp_meets_the_suspension_on_its_class(
    operator_dir: Path,
) -> None:
    """Argentina's live-bird suspension hangs on the class Aves (Species+ id 32). A line
    naming the family as a whole ('Trochilidae spp.') used to be no taxon at all, so it met
    nothing above the family, while 'Trochilidae' alone met the class."""

    def live_birds(name: str, country: str = "AR") -> list[str]:
        permit = exported_from(country, scientific_name=name, term="LIV", source="W")
        return [finding.message for finding in _found(permit, "EPIX-COMP-006")]

    _answer(operator_dir, "birds.json", AVES, HUMMINGBIRDS)
    _clear_caches()
    for written in ("Trochilidae spp.", "TROCHILIDAE  spp", "Trochilidae"):
        (warning,) = live_birds(written)
        assert "CITES Notif. No. 2006/006" in warning and "from AR of the class Aves" in warning
    assert live_birds("Trochilidae spp.", "CL") == []
    # Only a genus or a higher taxon is named as a whole: an order the answers do not hold
    # places nothing, and 'spp.' after a species stays a trinomial under it (not the species).
    assert live_birds("Apodiformes spp.") == []
    under_species = taxonomy().naming("Loxodonta africana spp.")
    assert under_species is not None and not under_species.exact
    naming = taxonomy().naming("Trochilidae spp.")
    assert naming is not None and naming.concept.full_name == "Trochilidae"
    assert naming.ids == frozenset({19110, 32})  # the family and the class it is under


# A hummingbird genus of Argentina, as a Species+ answer gives a genus concept.
FIRECROWNS = _concept(
    19120,
    "Sephanoides",
    "GENUS",
    higher=BIRDS | {"order": "Apodiformes", "family": "Trochilidae"},
)
# The genus of the big-headed turtle, under the family Canada reserved (2013-2015, id 531).
PLATYSTERNON = _concept(
    19610,
    "Platysternon",
    "GENUS",
    listing="I",
    higher={"kingdom": "Animalia", "class": "Reptilia", "order": "Testudines"}
    | {"family": "Platysternidae"},
)


def test_one_unidentified_species_of_a_genus_meets_the_measures_on_the_genus_and_above(
    operator_dir: Path,
) -> None:
    """'Genus sp.' names one species of the genus, not identified further: it is within the
    genus as 'Genus spp.' is, so the genus's measures and those of the taxa above it apply.
    It used to be no taxon at all, so Argentina's live-bird suspension (class Aves, Species+
    id 32) and Canada's reservation on the family Platysternidae (id 531) missed it."""

    def live_birds(name: str, country: str = "AR") -> list[str]:
        permit = exported_from(country, scientific_name=name, term="LIV", source="W")
        return [finding.message for finding in _found(permit, "EPIX-COMP-006")]

    _answer(operator_dir, "animals.json", AVES, FIRECROWNS, PLATYSTERNON)
    _clear_caches()
    for written in ("Sephanoides sp.", "SEPHANOIDES  sp", "Sephanoides spp."):
        (warning,) = live_birds(written)
        assert "CITES Notif. No. 2006/006" in warning and "from AR of the class Aves" in warning
    assert live_birds("Sephanoides sp.", "CL") == []
    naming = taxonomy().naming("Sephanoides sp.")
    assert naming is not None and naming.concept.full_name == "Sephanoides" and naming.exact
    assert naming.ids == frozenset({19120, 32})
    # Box 10 is checked against the genus's listing, as for 'Sephanoides spp.'.
    declared = exported_from("AR", scientific_name="Sephanoides sp.", appendix="I")
    (appendix,) = _found(declared, "EPIX-COMP-008")
    assert "lists Sephanoides in Appendix II" in appendix.message
    in_force = date(2014, 3, 1)
    assert has_reservation("CA", "Platysternon sp.", None, in_force)
    turtle = exported_from("CA", issued=in_force, scientific_name="Platysternon sp.", appendix="I")
    (held,) = _found(turtle, "EPIX-COMP-003")
    assert "reservation for the family Platysternidae since 2013-06-12" in held.message
    # Namibia's reservation on the genus Acinonyx (id 1929) meets it by name, held or not.
    assert has_reservation("NA", "Acinonyx sp.", None, in_force)
    # 'sp.' after a species is no group: a trinomial under the species, as 'spp.' is.
    under_species = taxonomy().naming("Loxodonta africana sp.")
    assert under_species is not None and not under_species.exact
    # Nor does a measure on one species of the genus meet its unidentified species: Botswana's
    # reservation on Loxodonta africana (1990-1997).
    assert has_reservation("BW", "Loxodonta africana", None, date(1995, 1, 1))
    assert not has_reservation("BW", "Loxodonta sp.", None, date(1995, 1, 1))


def test_a_quota_on_a_higher_taxon_covers_the_taxa_placed_under_it(tmp_path: Path) -> None:
    table = tmp_path / "quotas.csv"
    header = "quota_type,start_date,end_date,taxon_name,rank,iso_code2,quota,unit,term,source,"
    table.write_text(
        f"{header}purpose,notes\n"
        "CoP_approved,01/01/2020,,Testudinidae,FAMILY,UZ,0,,LIV,W,T,\n"
        "CoP_approved,01/01/2020,,Reptilia,CLASS,UZ,100,,LIV,W,T,\n",
        encoding="utf-8",
    )
    index = QuotaIndex(load_quotas(table))
    names = load_taxonomy([_answer(tmp_path / "answers", "t.json", TORTOISE, PARROT)])
    trade: dict[str, Any] = {"exporter": "UZ", "appendix": "II", "term": "LIV", "source": "W"}
    trade |= {"purpose": "T", "at": date(2024, 3, 1)}

    def covering(name: str) -> list[tuple[str, Decimal]]:
        naming = names.naming(name)
        within = naming.within if naming is not None else frozenset()
        found = index.covering(taxon=name, within=within, **trade)
        return [(quota.taxon, quota.quota) for quota in found]

    # The narrowest higher taxon the table lists counts, as a species listed apart does.
    assert covering("Testudo graeca") == [("Testudinidae", Decimal(0))]
    assert covering("Testudo graeca ibera") == [("Testudinidae", Decimal(0))]
    assert covering("Cyanoliseus patagonus") == []  # a bird
    assert covering("Testudo horsfieldii") == []  # not in the taxonomy: not placed


def test_a_malformed_operator_answer_is_named_by_file_and_entry(tmp_path: Path) -> None:
    folder = tmp_path / "answers"
    bad_listing = _concept(19400, "Testudo marginata", listing="IV")
    path = _answer(folder, "reptiles.json", TORTOISE, bad_listing)
    with pytest.raises(ReferenceDataError) as raised:
        load_taxonomy([path])
    assert str(raised.value) == (
        f"{path}: taxon_concepts[1] (id 19400): cites_listing 'IV' is not a list of I, II, III "
        "and NC."
    )
    for broken, says in (
        ({**TORTOISE, "rank": "SPECIE"}, "rank 'SPECIE' is not a taxonomic rank"),
        ({**TORTOISE, "full_name": ""}, "full_name '' is not a name"),
        ({**TORTOISE, "higher_taxa": ["Reptilia"]}, "higher_taxa is not an object"),
        ({**TORTOISE, "id": "19200"}, "id '19200' is not a number"),
        (
            {**TORTOISE, "synonyms": [{"id": "5252", "full_name": "Testudo ibera"}]},
            "synonyms.id '5252' is not a number",
        ),
    ):
        _answer(folder, "reptiles.json", broken)
        with pytest.raises(ReferenceDataError, match=f"taxon_concepts\\[0\\].*: {says}"):
            load_taxonomy([path])
    path.write_text('{"taxon_concepts": {}}', encoding="utf-8")
    with pytest.raises(ReferenceDataError, match="is not a Species\\+ taxon_concepts answer"):
        load_taxonomy([path])
    path.write_text('{"taxon_concepts": [', encoding="utf-8")
    with pytest.raises(ReferenceDataError, match="is not a readable JSON file"):
        load_taxonomy([path])
    with pytest.raises(ReferenceDataError, match=r"EPIX_SPECIESPLUS_DIR .* is not a directory"):
        answer_files(tmp_path / "absent")


def test_epix_validate_stops_on_a_malformed_operator_answer(
    operator_dir: Path, tmp_path: Path
) -> None:
    path = _answer(operator_dir, "birds.json", {**PARROT, "synonyms": "none"})
    permit = tmp_path / "permit.xml"
    permit.write_bytes(write_permit(base()))
    result = CliRunner().invoke(cli, ["validate", str(permit)])
    assert result.exit_code == 1
    assert (
        f"Error: {path}: taxon_concepts[0] (id 19100): synonyms is not a list of objects."
        in result.output
    )


def test_the_annual_reports_quota_use_counts_a_synonym_under_the_accepted_name(
    operator_dir: Path,
) -> None:
    """Screening counts a line named by a synonym against the accepted name's quota; the
    year's quota use must count it there too, or the two disagree on Tanzania's 1,600 wild
    Nile crocodiles."""
    crocodile = _concept(10745, "Crocodylus niloticus", synonyms=("Crocodilus vulgaris",))
    _answer(operator_dir, "crocodiles.json", crocodile)

    records = [
        exported("TZ-1", "Crocodylus niloticus", 1000),
        exported("TZ-2", "Crocodilus  VULGARIS", 800),
    ]
    [use] = quota_use(records, "TZ")
    assert (use.quota.taxon, use.quota.quota, use.used, use.over) == (
        "Crocodylus niloticus",
        Decimal(1600),
        Decimal(1800),
        True,
    )
    assert use.permits == ["TZ-1", "TZ-2"]


# A variety as Species+ gives one (rank VARIETY, "var." in its full name), under its species.
CACTI = {"kingdom": "Plantae", "class": "Magnoliopsida", "order": "Caryophyllales"}
VARIETY = _concept(
    19500,
    "Mammillaria carmenae var. rubrispina",
    "VARIETY",
    higher=CACTI | {"family": "Cactaceae", "genus": "Mammillaria"},
)
CACTACEAE = _concept(19501, "Cactaceae", "FAMILY", higher=CACTI)


def _suspended(concept_id: int) -> dict[str, Any]:
    """A Species+ ``cites_legislation`` suspension entry (the shape of the bundled ones) on
    the concept ``concept_id``, for exports from Mexico."""
    return {
        "id": 900000 + concept_id,
        "taxon_concept_id": concept_id,
        "notes": "Exports of wild specimens suspended.",
        "start_date": "2020-01-01",
        "is_current": True,
        "applies_to_import": False,
        "geo_entity": {"iso_code2": "MX", "name": "Mexico", "type": "COUNTRY"},
        "start_notification": {"name": "CITES Notif. No. 2020/001", "date": "2020-01-01"},
    }


def test_quotas_and_suspensions_on_a_variety_or_a_family_cover_the_same_lines(
    tmp_path: Path,
) -> None:
    """A quota and a suspension set on the same taxon cover the same box 7 names: a variety
    by its name, a family by its name ('Cactaceae spp.') and the taxa Species+ places in it.
    A quota on a variety used to cover nothing, a suspension on one its name."""
    table = tmp_path / "quotas.csv"
    header = "quota_type,start_date,end_date,taxon_name,rank,iso_code2,quota,unit,term,source,"
    table.write_text(
        f"{header}purpose,notes\n"
        "CoP_approved,01/01/2020,,Mammillaria carmenae var. rubrispina,VARIETY,MX,0,,LIV,W,T,\n"
        "CoP_approved,01/01/2020,,Cactaceae,FAMILY,MX,0,,LIV,W,T,\n",
        encoding="utf-8",
    )
    on_variety, on_family = load_quotas(table)
    names = load_taxonomy([_answer(tmp_path / "answers", "cacti.json", VARIETY, CACTACEAE)])
    legislation = tmp_path / "legislation"
    legislation.mkdir()
    for concept in (VARIETY, CACTACEAE):
        answer = {"cites_listings": [], "cites_quotas": []}
        answer["cites_suspensions"] = [_suspended(concept["id"])]
        (legislation / f"cites_legislation_{concept['id']}.json").write_text(
            json.dumps(answer), encoding="utf-8"
        )
    suspended = {s.rank: s for s in load_suspensions(legislation, (), names)}
    assert sorted(suspended) == ["FAMILY", "VARIETY"]
    at = date(2024, 3, 1)
    for quota, suspension, covered in (
        (on_variety, suspended["VARIETY"], ("Mammillaria carmenae var. rubrispina",)),
        (
            on_family,
            suspended["FAMILY"],
            ("Mammillaria carmenae var. rubrispina", "Cactaceae", "cactaceae  SPP."),
        ),
    ):
        for name in (
            "Mammillaria carmenae var. rubrispina",
            "MAMMILLARIA carmenae var.  rubrispina",
            "Mammillaria carmenae",
            "Mammillaria carmenae var. rubrispinae",
            "Cactaceae",
            "cactaceae  SPP.",
            "Cactaceaeae",
        ):
            naming = names.naming(name)
            within = naming.within if naming is not None else frozenset()
            expected = taxon_key(name) in {taxon_key(n) for n in covered}
            assert quota.names(name, at, within) is expected, (quota.taxon, name)
            assert suspension.names(name, within) is expected, (suspension.taxon, name)
    index = QuotaIndex((on_variety,))
    trade: dict[str, Any] = {"exporter": "MX", "appendix": "II", "term": "LIV", "source": "W"}
    trade |= {"purpose": "T", "at": at}
    assert index.covering(taxon="Mammillaria carmenae var. rubrispina", **trade) == [on_variety]


# Canada's reservation entered on the family Platysternidae (12 June 2013 - 20 May 2015, in
# UNEP-WCMC's table beside its row for the family's one species, Platysternon megacephalum). An
# answer splitting the family, here holding Platysternon peguense (Gray, 1870; CITES's reference
# keeps it a subspecies) as a species, places a taxon under the family that no other row names.
SPLIT_TURTLE = _concept(
    19600,
    "Platysternon peguense",
    listing="I",
    higher={"kingdom": "Animalia", "class": "Reptilia", "order": "Testudines"}
    | {"family": "Platysternidae", "genus": "Platysternon"},
)


def test_a_reservation_on_a_family_covers_the_taxa_species_plus_places_in_it(
    operator_dir: Path,
) -> None:
    def named(name: str, issued: date) -> list[str]:
        permit = exported_from("CA", issued=issued, scientific_name=name, appendix="I")
        return [finding.message for finding in _found(permit, "EPIX-COMP-003")]

    in_force, withdrawn = date(2014, 3, 1), date(2015, 5, 21)
    turtle = "Platysternon peguense"
    assert named(turtle, in_force) == []  # the node cannot place it in the family: unknown
    assert not has_reservation("CA", turtle, None, in_force)
    _answer(operator_dir, "turtles.json", SPLIT_TURTLE)
    _clear_caches()
    (held,) = named(turtle, in_force)
    assert held == (
        "Line 1: CA (exporter) holds a reservation for the family Platysternidae since "
        "2013-06-12; it trades this taxon as a non-Party (Art. XXIII)."
    )
    assert has_reservation("CA", turtle, None, in_force)  # what the Appendix I rules ask
    assert named(turtle, withdrawn) == []
    assert not has_reservation("CA", turtle, None, withdrawn)
    assert not has_reservation("US", turtle, None, in_force)
    # Box 7 naming the family itself meets the family's row by name.
    (family,) = named("Platysternidae spp.", in_force)
    assert "reservation for the family Platysternidae" in family


# Norway and Japan both reserve the sei whale (since 1981), only Japan Bryde's whale (1983).
# Answers listing one synonym under both (as Species+ does for a name later split between
# taxa) leave box 7's "Balaenoptera brydei" standing for neither.
SEI_WHALE = _concept(9445, "Balaenoptera borealis", listing="I", synonyms=("Balaenoptera brydei",))
BRYDES_WHALE = _concept(6352, "Balaenoptera edeni", listing="I", synonyms=("Balaenoptera brydei",))


def test_a_synonym_of_several_taxa_is_screened_as_written_and_lifts_no_rule(
    operator_dir: Path,
) -> None:
    def whale_meat(name: str) -> Permit:
        permit = exported_from("NO", scientific_name=name, appendix="I", source="W", term="MEA")
        to = TradeParty(name="Importer", address=Address(country="JP"))
        return change(permit, purpose="T", importer=to, references=())

    appendix_one = {"EPIX-RULE-011", "EPIX-RULE-012"}

    def refused(name: str) -> set[str]:
        found = check_rules(whale_meat(name), has_reservation=has_reservation)
        return appendix_one & {finding.code for finding in found}

    _answer(operator_dir, "whales.json", SEI_WHALE)
    _clear_caches()
    assert refused("Balaenoptera brydei") == set()  # the sei whale's synonym: both reserve it
    _answer(operator_dir, "whales.json", SEI_WHALE, BRYDES_WHALE)
    _clear_caches()
    assert refused("Balaenoptera brydei") == appendix_one
    assert refused("Balaenoptera borealis") == set()
    screened = screen_permit(whale_meat("Balaenoptera  brydei"))
    assert [finding.message for finding in screened] == [
        "Line 1: Balaenoptera brydei is a synonym of Balaenoptera borealis and of Balaenoptera "
        "edeni in the CITES taxonomy (Species+); EPIX cannot tell which taxon the specimen is, "
        "so the line was screened as written for quotas, reservations and suspensions: check "
        "them for the taxon it is."
    ]
    assert ERROR_TABLE["EPIX-COMP-009"].severity is Severity.WARNING
    # A subspecies written under it is told the same, and lifts no rule either.
    assert refused("Balaenoptera brydei brydei") == appendix_one
    (told,) = screen_permit(whale_meat("Balaenoptera brydei brydei"))
    assert told.message.startswith(
        "Line 1: Balaenoptera brydei brydei: Balaenoptera brydei is a synonym of Balaenoptera "
        "borealis and of Balaenoptera edeni in the CITES taxonomy (Species+);"
    )


# Answers listing one genus name as a synonym under two accepted genera, as Species+ does for
# a genus later split (here the whiptails once all in Cnemidophorus; the test's answers hold
# no accepted Cnemidophorus).
WHIPTAILS = {"kingdom": "Animalia", "class": "Reptilia", "family": "Teiidae"}
ASPIDOSCELIS = _concept(
    19800, "Aspidoscelis", "GENUS", higher=WHIPTAILS, synonyms=("Cnemidophorus",)
)
AMEIVULA = _concept(19801, "Ameivula", "GENUS", higher=WHIPTAILS, synonyms=("Cnemidophorus",))


def test_a_group_named_under_a_genus_synonym_of_several_genera_is_told_it(
    operator_dir: Path,
) -> None:
    """'Cnemidophorus spp.' names the whole of a genus synonym two accepted genera share: EPIX
    cannot tell which genus the specimens are of. It used to pass without a word (the shared
    synonym stands for no taxon, and only the bare name or a species part was looked up)."""
    _answer(operator_dir, "whiptails.json", ASPIDOSCELIS, AMEIVULA)
    _clear_caches()
    for written in (
        "Cnemidophorus spp.",
        "cnemidophorus  SPP",
        "Cnemidophorus sp.",
        "Cnemidophorus",
    ):
        (told,) = screen_permit(exported_from("MX", scientific_name=written))
        assert told.code == "EPIX-COMP-009", written
        assert "is a synonym of Ameivula and of Aspidoscelis in the CITES taxonomy" in (
            told.message
        )
        assert taxonomy().naming(written) is None  # screened as written
    (told,) = screen_permit(exported_from("MX", scientific_name="Cnemidophorus spp."))
    assert told.message.startswith("Line 1: Cnemidophorus spp. is a synonym of Ameivula")
    # An accepted genus written as a group is that genus, and is told nothing.
    assert screen_permit(exported_from("MX", scientific_name="Aspidoscelis spp.")) == []


# Canada's reservation on the small-clawed otter (26 Nov 2019 - 2 Dec 2020), in UNEP-WCMC's
# table as 'Aonyx cinerea', Species+ taxon 5252, with its note: "Originally listed as Aonyx
# cinerea, which became a synonym of Aonyx cinereus in 2023". Species+ answers for Aonyx
# cinereus list the old name among its synonyms with that id; the accepted concept's id
# (19700) stands for the one Species+ gave the new name. In the other shape Species+ renames
# a concept in place: the row's id is the accepted one, its name a synonym.
OTTER_HIGHER = {"kingdom": "Animalia", "class": "Mammalia", "order": "Carnivora"}
OTTER_RENAMED = _concept(19700, "Aonyx cinereus", listing="I", higher=OTTER_HIGHER)
OTTER_RENAMED["synonyms"] = [
    {"id": 5252, "full_name": "Aonyx cinerea", "author_year": "(Illiger, 1815)", "rank": "SPECIES"}
]
OTTER_IN_PLACE = _concept(
    5252, "Aonyx cinereus", listing="I", higher=OTTER_HIGHER, synonyms=("Aonyx cinerea",)
)


@pytest.mark.parametrize("answer", [OTTER_RENAMED, OTTER_IN_PLACE], ids=["new id", "same id"])
def test_a_reservation_still_named_as_species_plus_no_longer_names_its_taxon_meets_it_by_id(
    operator_dir: Path, answer: dict[str, Any]
) -> None:
    def named(name: str, issued: date) -> list[str]:
        permit = exported_from("CA", issued=issued, scientific_name=name, appendix="I")
        return [finding.message for finding in _found(permit, "EPIX-COMP-003")]

    in_force, withdrawn = date(2020, 6, 1), date(2020, 12, 3)
    # Without the taxonomy, box 7's old name meets the row by name; the new one cannot.
    assert len(named("Aonyx cinerea", in_force)) == 1
    assert named("Aonyx cinereus", in_force) == []
    _answer(operator_dir, "otters.json", answer)
    _clear_caches()
    for written in ("Aonyx cinereus", "Aonyx cinerea", "AONYX  cinereus"):
        (held,) = named(written, in_force)
        assert held.startswith(
            "Line 1: CA (exporter) holds a reservation for Aonyx cinerea since 2019-11-26; it "
            "trades this taxon as a non-Party (Art. XXIII). Reservation note: Originally listed"
        ), written
        assert has_reservation("CA", written, None, in_force)  # what the Appendix I rules ask
    assert named("Aonyx cinereus", withdrawn) == []
    assert not has_reservation("CA", "Aonyx cinereus", None, withdrawn)
    assert not has_reservation("US", "Aonyx cinereus", None, in_force)
    assert named("Aonyx capensis", in_force) == []  # another otter of the genus


@pytest.fixture
def published(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Replaces the quota table by rows 'name,id,rank,Party,quota' of live wild specimens
    traded for commerce since 2020, in the packaged table's columns."""
    table = tmp_path / "quotas.csv"
    monkeypatch.setattr(quota_table, "DATA", table)

    def publish(*rows: str) -> None:
        header = "quota_type,start_date,end_date,taxon_name,taxon_concept_id,rank,iso_code2,"
        lines = "".join(f"CoP_approved,01/01/2020,,{row},,LIV,W,T,\n" for row in rows)
        table.write_text(f"{header}quota,unit,term,source,purpose,notes\n{lines}", "utf-8")
        quota_table.quotas.cache_clear()
        quota_table.quota_index.cache_clear()

    yield publish
    quota_table.quotas.cache_clear()
    quota_table.quota_index.cache_clear()


def _flagged(exporter: str, name: str) -> list[str]:
    """The quota findings (EPIX-COMP-001/002) for live wild specimens exported for commerce."""
    permit = exported_from(exporter, scientific_name=name, term="LIV", source="W")
    return [finding.code for finding in screen_permit(permit) if finding.code < "EPIX-COMP-003"]


def test_quotas_listed_under_an_old_name_meet_the_taxon_by_id(
    operator_dir: Path, published: Callable[..., None]
) -> None:
    """A quota row keeps its Species+ id when Species+ renames the taxon (a species, or a
    family above it): the id finds the taxon, and a quota on the taxon itself counts before
    one on its genus."""

    def flagged(name: str) -> list[str]:
        return _flagged("ID", name)

    placed = OTTER_RENAMED | {"higher_taxa": OTTER_HIGHER | {"family": "Mustelidae"}}
    family = _concept(19720, "Mustelidae", "FAMILY", listing=None, higher=OTTER_HIGHER)
    published("Aonyx cinerea,5252,SPECIES,ID,0", "Lutridae,19720,FAMILY,ID,0")
    assert flagged("Aonyx cinereus") == []
    _answer(operator_dir, "otters.json", placed, family)
    _clear_caches()
    assert flagged("Aonyx cinereus") == ["EPIX-COMP-002"]
    assert flagged("Aonyx cinerea") == ["EPIX-COMP-002"]
    # The family row's id is the family the answer names Mustelidae.
    published("Lutridae,19720,FAMILY,ID,0")
    assert flagged("Aonyx cinereus") == ["EPIX-COMP-002"]
    assert flagged("Aonyx capensis") == []  # not in the taxonomy: not placed
    # A zero quota on the species by its id counts before a genus listed by name, whose
    # quotas then do not reach it.
    published("Aonyx,19710,GENUS,ID,1", "Aonyx cinerea,5252,SPECIES,ID,0")
    assert flagged("Aonyx cinereus") == ["EPIX-COMP-002"]
    assert flagged("Aonyx capensis") == ["EPIX-COMP-001"]  # the genus quota of 1
    # Rows under the old and the new name are both the taxon's own.
    published("Aonyx cinerea,5252,SPECIES,ID,0", "Aonyx cinereus,19700,SPECIES,ID,1")
    assert flagged("Aonyx cinereus") == ["EPIX-COMP-002", "EPIX-COMP-001"]


def test_the_annual_reports_quota_use_meets_a_quota_under_an_old_name_by_id(
    operator_dir: Path, published: Callable[..., None]
) -> None:
    """A quota row still under the otter's old name holds Species+ id 5252: screening meets it
    by id, and the year's quota use must count the same lines against it."""
    published("Aonyx cinerea,5252,SPECIES,ID,1")
    _answer(operator_dir, "otters.json", OTTER_RENAMED)
    _clear_caches()
    records = [
        replace(exported(number, "Aonyx cinereus", 1), term="LIV", appendix="I")
        for number in ("ID-1", "ID-2")
    ]
    assert _flagged("ID", "Aonyx cinereus") == ["EPIX-COMP-001"]  # 1 of 1 on one permit
    [use] = quota_use(records, "ID")
    assert (use.quota.taxon, use.used, use.over) == ("Aonyx cinerea", Decimal(2), True)
    assert use.permits == ["ID-1", "ID-2"]


def test_screening_and_the_annual_reports_quota_use_count_a_family_spp_under_its_class(
    operator_dir: Path, published: Callable[..., None]
) -> None:
    """A quota on the class Aves: screening meets a 'Trochilidae spp.' line under it, so the
    year's quota use must count the same lines, and neither counts a line placed elsewhere."""
    published("Aves,32,CLASS,AR,1")
    _answer(operator_dir, "birds.json", AVES, HUMMINGBIRDS, TORTOISE)
    _clear_caches()
    records = [
        replace(exported(number, name, 1), term="LIV")
        for number, name in (("AR-1", "Trochilidae spp."), ("AR-2", "Trochilidae"))
    ]
    records.append(replace(exported("AR-3", "Testudo graeca", 5), term="LIV"))
    for record in records:
        counted = record.taxon != "Testudo graeca"
        assert (_flagged("AR", str(record.taxon)) != []) is counted, record.taxon
    [use] = quota_use(records, "AR")
    assert (use.quota.taxon, use.used, use.over) == ("Aves", Decimal(2), True)
    assert use.permits == ["AR-1", "AR-2"]


def test_a_variety_written_without_var_meets_the_quota_on_it(
    operator_dir: Path, published: Callable[..., None]
) -> None:
    """Box 7 often leaves out "var.": 'Mammillaria carmenae rubrispina' is the variety
    Species+ names 'Mammillaria carmenae var. rubrispina', when its answers hold it and that
    name is no other taxon's."""
    published("Mammillaria carmenae var. rubrispina,,VARIETY,MX,0")
    written = "Mammillaria carmenae rubrispina"
    assert _flagged("MX", written) == []  # a name the node does not hold: not checked
    _answer(operator_dir, "cacti.json", VARIETY)
    _clear_caches()
    for name in (
        written,
        "MAMMILLARIA carmenae  rubrispina",
        "Mammillaria carmenae var. rubrispina",
    ):
        assert _flagged("MX", name) == ["EPIX-COMP-002"], name
    for name in ("Mammillaria carmenae", "Mammillaria carmenae rubrispinae"):
        assert _flagged("MX", name) == [], name
    permit = exported_from("MX", scientific_name=written, term="LIV", source="W", appendix="II")
    assert "EPIX-COMP-007" not in {finding.code for finding in screen_permit(permit)}
    # A subspecies of that name the answers hold is that taxon, not the variety.
    subspecies = _concept(19502, written, "SUBSPECIES", higher=CACTI)
    _answer(operator_dir, "cacti.json", VARIETY, subspecies)
    _clear_caches()
    assert _flagged("MX", written) == []


def test_a_taxon_whose_quotas_by_id_are_not_in_force_has_no_quota(
    operator_dir: Path, published: Callable[..., None]
) -> None:
    """The table lists quotas for the otter's Species+ id, in force from 2020 only: a permit
    issued in 2019, and that year's quota use, meet no quota (they stopped screening with
    'max() arg is an empty sequence', a 500 for the permit's submission)."""
    published("Aonyx cinerea,5252,SPECIES,ID,0")
    _answer(operator_dir, "otters.json", OTTER_RENAMED)
    _clear_caches()
    before = exported_from("ID", issued=date(2019, 6, 1), scientific_name="Aonyx cinereus")
    assert _flagged("ID", "Aonyx cinereus") == ["EPIX-COMP-002"]  # in force on ISSUED
    assert [code for code in codes(before) if code < "EPIX-COMP-003"] == []
    record = replace(
        exported("ID-1", "Aonyx cinereus", 1), issued_on=date(2019, 6, 1), endorsed_on=None
    )
    assert quota_use([replace(record, term="LIV", appendix="I")], "ID") == []
