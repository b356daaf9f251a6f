"""Parties' reservations (Art. XXIII): a Party with a reservation is treated as a non-Party for
that taxon, so Appendix I commercial trade involving it is not refused (rule EPIX-RULE-012)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from pathlib import Path

from epix.permits.sapi_dates import in_force, names_taxon, parse_sapi_date

DATA = Path(__file__).resolve().parent / "data" / "reservations.csv"


@dataclass(frozen=True, slots=True)
class Reservation:
    party: str
    taxon: str
    rank: str
    start: date | None
    end: date | None


# UNEP-WCMC's internal note on a reservation without a withdrawal date that the CITES list of
# current reservations no longer holds (Japan's hawksbill subspecies, entered in 1980).
NOT_CURRENT = "reservation not current"
INTERNAL_NOTES = "Internal Notes "  # sic: the upstream header ends in a space


def _withdrawn_undated(row: dict[str, str]) -> bool:
    """A reservation lifts a refusal (EPIX-RULE-012), so one that is no longer current must
    not stay in force only because its withdrawal date was never recorded."""
    return not row["end_date"].strip() and NOT_CURRENT in row[INTERNAL_NOTES].lower()


@cache
def reservations() -> tuple[Reservation, ...]:
    """All reservations but the undated withdrawn ones, read once per process."""
    with DATA.open(encoding="utf-8", newline="") as handle:
        return tuple(
            Reservation(
                party=row["iso_code2"].strip(),
                taxon=" ".join(row["taxon_name"].split()),
                rank=row["rank"],
                start=parse_sapi_date(row["start_date"]),
                end=parse_sapi_date(row["end_date"]),
            )
            for row in csv.DictReader(handle)
            if row["taxon_name"].strip()
            and row["iso_code2"].strip()
            and not _withdrawn_undated(row)
        )


@cache
def _by_party() -> dict[str, tuple[Reservation, ...]]:
    """The reservations grouped by Party: a lookup scans one Party's few, not all ~400."""
    groups: dict[str, list[Reservation]] = {}
    for entry in reservations():
        groups.setdefault(entry.party, []).append(entry)
    return {party: tuple(entries) for party, entries in groups.items()}


def has_reservation(party: str, taxon: str, at: datetime | date) -> bool:
    """True when ``party`` held a reservation covering ``taxon`` on the date ``at``."""
    day = at.date() if isinstance(at, datetime) else at
    return any(
        in_force(entry.start, entry.end, day) and names_taxon(entry.taxon, entry.rank, taxon)
        for entry in _by_party().get(party, ())
    )
