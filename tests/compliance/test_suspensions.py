"""Trade suspensions from the Species+ data, narrowed by the SAPI exemptions: warnings only."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from epix.compliance import screen_permit
from epix.compliance.suspensions import (
    EXEMPTIONS,
    Suspension,
    _by_country,
    load_exemptions,
    load_suspensions,
    suspensions,
)
from epix.compliance.taxonomy import Taxonomy, load_taxonomy
from epix.errors import ERROR_TABLE, Severity
from epix.permits.model import Address, Permit, TradeParty
from epix.permits.sapi_dates import ReferenceDataError
from tests.compliance.test_screening import exported_from
from tests.compliance.test_taxonomy import _answer, _concept
from tests.permits.helpers import change

ISSUED = date(2024, 3, 1)
# The module itself: ``epix.compliance.suspensions`` as an attribute is the function the
# package exports under that name.
SUSPENSION_MODULE = importlib.import_module("epix.compliance.suspensions")


def grey_parrots(country: str, *, purpose: str = "T", source: str = "W", **line: object) -> Permit:
    permit = exported_from(country, scientific_name="Psittacus erithacus", source=source, **line)
    return change(permit, purpose=purpose)


def suspended(permit: Permit) -> list[str]:
    return [f.message for f in screen_permit(permit) if f.code == "EPIX-COMP-006"]


def test_a_country_wide_commercial_suspension_warns_on_commercial_exports_only() -> None:
    # CITES Notif. No. 2019/035: all commercial trade in CITES-listed species with Somalia is
    # suspended; UNEP-WCMC's exemptions read it as not covering zoos, gardens, circuses and
    # science (purposes Z, G, Q, S).
    (warning,) = suspended(grey_parrots("SO"))
    assert warning == (
        "Line 1: Psittacus erithacus: CITES Notif. No. 2019/035, since 2019-07-04 (a "
        "recommendation to suspend trade, Art. XIII and Res. Conf. 14.3), concerns exports from "
        'SO of every CITES-listed species: "All commercial trade in specimens of CITES-listed '
        'species." UNEP-WCMC reads it as not covering purpose G/Q/S/Z.'
    )
    assert suspended(grey_parrots("SO", purpose="Z")) == []
    assert suspended(grey_parrots("SO", purpose="S")) == []
    assert suspended(grey_parrots("SO", issued=date(2019, 7, 3))) == []
    assert ERROR_TABLE["EPIX-COMP-006"].severity is Severity.WARNING


def test_an_exemption_by_source_and_purpose_narrows_a_domestic_export_ban() -> None:
    # India bans commercial exports of wild-taken specimens (CITES Notif. No. 2018/031); the
    # exemption row reads sources A, C, D, F, I and the non-commercial purposes as outside it.
    (warning,) = suspended(grey_parrots("IN"))
    assert "(a stricter domestic measure, Art. XIV.1)" in warning
    assert warning.endswith(
        "UNEP-WCMC reads it as not covering purpose B/E/H/L/M/N/P/S, source A/C/D/F/I."
    )
    assert suspended(grey_parrots("IN", source="C")) == []
    assert suspended(grey_parrots("IN", purpose="S")) == []


def test_a_suspension_without_a_reading_of_its_scope_says_so() -> None:
    # Djibouti: all trade suspended since 2018 (no exemption) and commercial trade since 2011.
    warnings = suspended(grey_parrots("DJ", purpose="S"))
    assert len(warnings) == 1 and "CITES Notif. No. 2018/015" in warnings[0]
    assert warnings[0].endswith(
        "EPIX holds no reading of its scope (purposes, sources, specimens): check whether this "
        "line is within it."
    )
    assert len(suspended(grey_parrots("DJ"))) == 2


def trophies(name: str, importer: str, source: str = "W") -> Permit:
    """Hunting trophies exported from South Africa."""
    permit = exported_from("ZA", scientific_name=name, term="TRO", source=source)
    to = TradeParty(name="Importer", address=Address(country=importer))
    return change(permit, purpose="H", importer=to)


def test_taxon_measures_match_the_taxon_and_the_side_of_the_trade() -> None:
    # The United States' three measures on African elephant imports (2014) concern trade with
    # the United States in Loxodonta africana, nothing else.
    warnings = suspended(trophies("Loxodonta africana", "US"))
    assert [w.split(",")[0] for w in warnings] == [
        "Line 1: Loxodonta africana: CITES Notif. No. 2014/037",
        "Line 1: Loxodonta africana: CITES Notif. No. 2014/037",
        "Line 1: Loxodonta africana: CITES Notif. No. 2014/045",
    ]
    assert all(
        "concerns trade, imports included, with US of Loxodonta africana" in w for w in warnings
    )
    assert suspended(trophies("Loxodonta africana", "DE")) == []
    assert suspended(trophies("Panthera leo", "US")) == []


def test_only_the_suspensions_epix_can_name_are_used() -> None:
    # The Species+ answers hold 17 suspensions; Argentina's birds and the Philippines'
    # terrestrial fauna hang on higher taxa (ids 32 and 23) no bundled answer names, so 15
    # remain (test_taxonomy: an operator's answer naming them brings them in).
    table = suspensions()
    assert len(table) == 15
    assert {entry.taxon for entry in table} == {None, "Loxodonta africana"}
    assert "AR" not in {entry.country for entry in table}


def test_every_exemption_row_is_read_with_its_unquoted_code_lists() -> None:
    table = load_exemptions(EXEMPTIONS)
    assert len(table) == 275
    india = [row for row in table if row.party == "IN" and row.start == date(2018, 3, 26)]
    assert [(row.sources, row.purposes) for row in india] == [
        (frozenset("ACDFI"), frozenset("SHPMENBL"))
    ]
    # Congo's grey parrots (2018): the source list runs on into the notes; no purpose is given.
    (parrots,) = [row for row in table if row.party == "CD" and row.start == date(2018, 11, 1)]
    assert (parrots.sources, parrots.purposes) == (frozenset("ACDFI"), None)


def test_a_malformed_exemption_row_is_named_by_line(tmp_path: Path) -> None:
    text = EXEMPTIONS.read_text(encoding="utf-8")
    somalia = "04/07/2019,,ALL,ALL,ALL,SO,ALL,ALL,ALL,Z, G, Q, S,"
    assert text.count(somalia) == 1
    broken = tmp_path / "exemptions.csv"
    broken.write_text(text.replace(somalia, somalia.replace("Z, G", "Z, V")), encoding="utf-8")
    with pytest.raises(ReferenceDataError, match=r"line \d+: purpose code V is not a CITES"):
        load_exemptions(broken)


@pytest.fixture
def exempted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Replaces the exemption table by the packaged header and the given rows."""
    table = tmp_path / "exemptions.csv"
    monkeypatch.setattr(SUSPENSION_MODULE, "EXEMPTIONS", table)
    header = EXEMPTIONS.read_text(encoding="utf-8").splitlines()[0]

    def publish(*rows: str) -> None:
        table.write_text("\n".join((header, *rows, "")), encoding="utf-8")
        suspensions.cache_clear()
        _by_country.cache_clear()

    yield publish
    suspensions.cache_clear()
    _by_country.cache_clear()


# A row in the SAPI table's shape on the United States' suspensions of elephant trophy imports
# (CITES Notif. No. 2014/037, 11 August 2014), reading them as not covering captive-bred,
# first-generation and ranched specimens, entered under Loxodonta cyclotis with its Species+ id:
# the bundled answer holds that name (id 37069) as a synonym of Loxodonta africana (4521).
def _trophy_exemption(taxon: str, concept_id: str) -> str:
    return f"11/08/2014,,{taxon},{concept_id},SPECIES,US,ALL,ALL,C, F, R,ALL,,Bred specimens."


def test_an_exemption_named_under_a_synonym_meets_the_line_by_its_species_plus_id(
    exempted: Callable[[str], None],
) -> None:
    """An exemption row used to meet a line by its name only: one entered under a name Species+
    now holds as a synonym left the suspension warning on the trade it exempts."""
    exempted(_trophy_exemption("Loxodonta cyclotis", "37069"))
    for name in ("Loxodonta africana", "Loxodonta cyclotis", "LOXODONTA africana  africana"):
        # Only the ivory measure (CITES Notif. No. 2014/045), which the row does not narrow.
        (bred,) = suspended(trophies(name, "US", source="C"))
        assert ": CITES Notif. No. 2014/045, since 2014-10-10" in bred, name
        assert len(suspended(trophies(name, "US"))) == 3, name  # wild: not exempted
    # Without the id, names decide: the synonym's row does not reach the accepted name.
    exempted(_trophy_exemption("Loxodonta cyclotis", ""))
    assert len(suspended(trophies("Loxodonta africana", "US", source="C"))) == 3
    # Another taxon's id exempts nothing here.
    exempted(_trophy_exemption("Elephas maximus", "5690"))
    assert len(suspended(trophies("Loxodonta africana", "US", source="C"))) == 3


def _suspension_entry(
    entry_id: int, country: str, start: str, taxon_id: int | None
) -> dict[str, Any]:
    """A Species+ ``cites_legislation`` suspension entry (the shape of the bundled ones)."""
    return {
        "id": entry_id,
        "taxon_concept_id": taxon_id,
        "notes": "The export of live specimens, as well as of parts and derivatives.",
        "start_date": start,
        "end_date": None,
        "is_current": True,
        "applies_to_import": False,
        "geo_entity": {"iso_code2": country, "name": country, "type": "COUNTRY"},
        "start_notification": {"name": "CITES Notif. No. 2006/006", "date": start},
    }


# Species+ id 5390 as an answer gives it; UNEP-WCMC's table holds four rows for Argentina's
# suspensions of 16 January 2006, one on Caiman latirostris (5390): source R is outside it.
BROAD_SNOUTED_CAIMAN = _concept(
    5390,
    "Caiman latirostris",
    higher={"kingdom": "Animalia", "class": "Reptilia", "order": "Crocodylia"},
)
BULNESIA = _concept(23851, "Bulnesia sarmientoi", higher={"kingdom": "Plantae"})


def test_an_exemption_narrows_only_the_suspension_its_taxon_identifies(tmp_path: Path) -> None:
    """The SAPI exemption rows were joined to suspensions by Party and start date only, so a
    country-wide suspension of the same day as Argentina's on Caiman latirostris took the
    caiman row too, and stopped warning on ranched caimans it still covers. A row carries its
    suspension's Species+ id (ALL: a country-wide one), which now joins it; a row whose id no
    suspension of that day is on names a taxon a wider one leaves out (Paraguay, 2011)."""
    table = load_exemptions(EXEMPTIONS)  # the real rows
    answers = tmp_path / "answers"
    names = load_taxonomy([_answer(answers, "taxa.json", BROAD_SNOUTED_CAIMAN, BULNESIA)])
    legislation = tmp_path / "legislation"
    legislation.mkdir()

    def published(*entries: dict[str, Any], held: Taxonomy = names) -> dict[int | None, Suspension]:
        answer = {"cites_listings": [], "cites_quotas": [], "cites_suspensions": list(entries)}
        (legislation / "cites_legislation_1.json").write_text(json.dumps(answer), "utf-8")
        return {s.concept_id: s for s in load_suspensions(legislation, table, held)}

    def covers(suspension: Suspension, name: str, source: str, **trade: str) -> bool:
        kept = {"term": "SKI", "purpose": "T"} | trade
        return suspension.covers(
            exporter=suspension.country,
            importer="DE",
            taxon=name,
            source=source,
            at=date(2012, 3, 1),
            **kept,
        )

    country_wide = _suspension_entry(1, "AR", "2006-01-16", None)
    on_caiman = _suspension_entry(2, "AR", "2006-01-16", 5390)
    held = published(country_wide, on_caiman)
    assert covers(held[5390], "Caiman latirostris", "W")
    assert not covers(held[5390], "Caiman latirostris", "R")  # the row's exemption
    assert covers(held[None], "Caiman latirostris", "R")  # not this suspension's row
    assert 5390 not in {row.concept_id for row in held[None].exemptions}
    # The same when the caiman's suspension is one the node cannot name (no answer holds 5390).
    unnamed = published(country_wide, on_caiman, held=load_taxonomy([]))
    assert list(unnamed) == [None]
    assert covers(unnamed[None], "Caiman latirostris", "R")
    # Paraguay's commercial suspension (19 January 2011) leaves out the timber and essential
    # oil of Bulnesia sarmientoi: the row carries that species' id, no suspension's.
    (paraguay,) = published(_suspension_entry(3, "PY", "2011-01-19", None)).values()
    assert len(paraguay.exemptions) == 3
    assert not covers(paraguay, "Bulnesia sarmientoi", "W", term="TIM")
    assert covers(paraguay, "Bulnesia sarmientoi", "W", term="LOG")
    assert not covers(paraguay, "Bulnesia sarmientoi", "W", term="LOG", purpose="S")
