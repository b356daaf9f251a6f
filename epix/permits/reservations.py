"""Parties' reservations (Art. XXIII): a Party with a reservation is treated as a non-Party for
that taxon, so Appendix I commercial trade between two Parties that both hold one is not refused
(rules EPIX-RULE-011 and 012); one reserving side alone does not free the other from Art. III."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from pathlib import Path

from epix.permits.sapi_dates import (
    ReferenceDataError,
    in_force,
    listed_name,
    names_taxon,
    parse_sapi_date,
    party_code,
    read_sapi_table,
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
    return Reservation(
        party=party_code(row["iso_code2"]),
        taxon=taxon,
        rank=rank,
        start=parse_sapi_date(row["start_date"]),
        end=parse_sapi_date(row["end_date"]),
        notes=" ".join(row["notes"].split()),
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


def reservations_in_force(party: str, taxon: str, at: datetime | date) -> list[Reservation]:
    """The reservations ``party`` held on the date ``at`` that cover ``taxon``."""
    entries = _by_party().get(party)
    if entries is None:  # most Parties hold none: no list to build
        return []
    day = at.date() if isinstance(at, datetime) else at
    return [
        entry
        for entry in entries
        if in_force(entry.start, entry.end, day) and names_taxon(entry.taxon, entry.rank, taxon)
    ]


def has_reservation(party: str, taxon: str, at: datetime | date) -> bool:
    """True when ``party`` held a reservation covering ``taxon`` on the date ``at``."""
    return bool(reservations_in_force(party, taxon, at))
