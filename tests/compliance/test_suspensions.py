"""Trade suspensions from the Species+ data, narrowed by the SAPI exemptions: warnings only."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import pytest

from epix.compliance import screen_permit
from epix.compliance.suspensions import EXEMPTIONS, _by_country, load_exemptions, suspensions
from epix.errors import ERROR_TABLE, Severity
from epix.permits.model import Address, Permit, TradeParty
from epix.permits.sapi_dates import ReferenceDataError
from tests.compliance.test_screening import exported_from
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
