"""Parties' reservations (Art. XXIII): a Party with a reservation is treated as a non-Party for
that taxon, so Appendix I commercial trade between two Parties that both hold one is not refused
(rules EPIX-RULE-011 and 012); one reserving side alone does not free the other from Art. III.

A reservation's SAPI note may leave out a species of the genus or a Party's population, which
box 7 and the specimen's origin show: such a specimen is not covered. Stocks and areas
("except stock of west Greenland") no box shows: the reservation is taken as covering the
specimen and screening says what could not be checked (EPIX-COMP-003)."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date, datetime
from functools import cache
from pathlib import Path

from epix.permits.sapi_dates import (
    ReferenceDataError,
    concept_id,
    covers_taxon,
    in_force,
    listed_name,
    parse_sapi_date,
    party_code,
    read_sapi_table,
    taxon_key,
)

DATA = Path(__file__).resolve().parent / "data" / "reservations.csv"


@dataclass(frozen=True, slots=True)
class Reservation:
    party: str
    taxon: str
    rank: str
    start: date | None
    end: date | None
    notes: str = ""  # SAPI's public note: may limit the reservation to some stocks or taxa
    # What the note limits, as far as a permit can show it (``read_limits``).
    excluded_taxa: tuple[str, ...] = ()  # names the reservation does not cover
    excluded_populations: frozenset[str] = frozenset()  # countries whose population it leaves out
    only_populations: frozenset[str] | None = None  # the only countries whose population it covers
    unchecked: str = ""  # the part of the note no box of a permit can show (a stock, an area)
    concept_id: int | None = None  # Species+ id of ``taxon`` (kept when Species+ renames it)

    def exclusion(self, taxon: str, population: str | None) -> str | None:
        """What the note leaves out that this specimen is, in words ('Discocactus horstii',
        'the population of AU'); None when the permit does not show it left out."""
        name = taxon_key(taxon)
        for excluded in self.excluded_taxa:
            if name == taxon_key(excluded) or name.startswith(taxon_key(excluded) + " "):
                return excluded
        if population is not None and population in self.excluded_populations:
            return f"the population of {population}"
        if (
            population is not None
            and self.only_populations is not None
            and population not in self.only_populations
        ):
            return f"the population of {population}"
        return None

    def doubt(self, population: str | None) -> str:
        """The note's limits the permit cannot show for this specimen ('' when none): free
        text about stocks or areas, or a population limit when the permit names no origin."""
        limits = [self.unchecked] if self.unchecked else []
        if population is None and (self.excluded_populations or self.only_populations):
            limits.append(self.notes)
        return " ".join(dict.fromkeys(limits))


# Notes that name the reservation's history, not a limit on it.
_HISTORY = (
    "original reservation as ",
    "reservation entered under ",
    "originally listed as ",
    "entry into effect delayed ",
)
_NOT_POPULATION = re.compile(r"[Rr]eservation not applicable to (?:the )?population of ([A-Z]{2})")
_ONLY_POPULATION = re.compile(
    r"[Rr]eservation applicable only to (?:the )?(?:(\w+) )?population of ([A-Z]{2})"
)
_NOT_SPECIES = re.compile(r"[Rr]eservation not applicable to ([A-Z])\. ?([a-z]+)")


def read_limits(entry: Reservation) -> Reservation:
    """The reservation with its note read: the taxa and populations it leaves out, which a
    permit's box 7 and origin can show, and what else limits it (``unchecked``). A note EPIX
    does not recognise is kept whole as ``unchecked``, so it is shown, never ignored."""
    note = entry.notes.strip().rstrip(".")
    if not note or note.lower().startswith(_HISTORY):
        return entry
    if match := _NOT_POPULATION.fullmatch(note):
        return replace(entry, excluded_populations=frozenset({match[1]}))
    if match := _ONLY_POPULATION.fullmatch(note):
        qualified = f"only the {match[1]} population of {match[2]}" if match[1] else ""
        return replace(entry, only_populations=frozenset({match[2]}), unchecked=qualified)
    genus = entry.taxon.split()[0]
    if (match := _NOT_SPECIES.fullmatch(note)) and genus.startswith(match[1]):
        return replace(entry, excluded_taxa=(f"{genus} {match[2]}",))
    return replace(entry, unchecked=entry.notes)


# UNEP-WCMC's internal note on a reservation without a withdrawal date that the CITES list of
# current reservations no longer holds (Japan's hawksbill subspecies, entered in 1980).
NOT_CURRENT = "reservation not current"
INTERNAL_NOTES = "Internal Notes "  # sic: the upstream header ends in a space


def _withdrawn_undated(row: dict[str, str]) -> bool:
    """A reservation lifts a refusal (EPIX-RULE-012), so one that is no longer current must
    not stay in force only because its withdrawal date was never recorded."""
    return not row["end_date"].strip() and NOT_CURRENT in row[INTERNAL_NOTES].lower()


COLUMNS = ("start_date", "end_date", "taxon_name", "rank", "iso_code2", "notes", INTERNAL_NOTES)


def _reservation(row: dict[str, str]) -> Reservation:
    """One row as a Reservation, or ValueError naming the malformed field."""
    taxon, rank = listed_name(row)
    return read_limits(
        Reservation(
            party=party_code(row["iso_code2"]),
            taxon=taxon,
            rank=rank,
            start=parse_sapi_date(row["start_date"]),
            end=parse_sapi_date(row["end_date"]),
            notes=" ".join(row["notes"].split()),
            concept_id=concept_id(row),
        )
    )


def load_reservations(path: Path) -> tuple[Reservation, ...]:
    """Every reservation of a SAPI reservation table but the undated withdrawn ones;
    ReferenceDataError names a malformed row's line."""
    table = []
    for line, row in read_sapi_table(path, COLUMNS):
        try:
            if not _withdrawn_undated(row):
                table.append(_reservation(row))
        except ValueError as exc:
            raise ReferenceDataError(f"{path} line {line}: {exc}.") from None
    return tuple(table)


@cache
def reservations() -> tuple[Reservation, ...]:
    """All reservations in the packaged table, read once per process."""
    return load_reservations(DATA)


@cache
def _by_party() -> dict[str, tuple[Reservation, ...]]:
    """The reservations grouped by Party: a lookup scans one Party's few, not all ~400."""
    groups: dict[str, list[Reservation]] = {}
    for entry in reservations():
        groups.setdefault(entry.party, []).append(entry)
    return {party: tuple(entries) for party, entries in groups.items()}


def reservations_in_force(
    party: str,
    taxon: str,
    at: datetime | date,
    within: frozenset[str] = frozenset(),
    ids: frozenset[int] = frozenset(),
) -> list[Reservation]:
    """The reservations ``party`` held on the date ``at`` that cover ``taxon``: by Species+ id
    (one of the line's ``ids``, ``Naming.ids``: Canada's on 'Aonyx cinerea', a name Species+
    now holds as a synonym of Aonyx cinereus), by name, or entered on a higher taxon (Canada's
    on the family Platysternidae) that Species+ places it ``within`` (``Naming.within``;
    empty: not known, so not covered)."""
    entries = _by_party().get(party)
    if entries is None:  # most Parties hold none: no list to build
        return []
    day = at.date() if isinstance(at, datetime) else at
    return [
        entry
        for entry in entries
        if in_force(entry.start, entry.end, day)
        and covers_taxon(entry.taxon, entry.rank, taxon, within, entry.concept_id, ids)
    ]


def has_reservation(
    party: str,
    taxon: str,
    population: str | None,
    at: datetime | date,
    within: frozenset[str] = frozenset(),
    ids: frozenset[int] = frozenset(),
) -> bool:
    """True when ``party`` held a reservation on the date ``at`` covering ``taxon`` (one of
    its Species+ ``ids``, or a taxon it is ``within``), unless its note leaves out that taxon
    or the specimen's ``population`` (ISO country, None: unknown)."""
    return any(
        entry.exclusion(taxon, population) is None
        for entry in reservations_in_force(party, taxon, at, within, ids)
    )
