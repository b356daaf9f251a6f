"""Published export quotas (CoP-approved and listing-annotation zero quotas) from SAPI."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path

from epix.permits.sapi_dates import in_force, names_taxon, parse_sapi_date, taxon_key

DATA = Path(__file__).resolve().parent / "data" / "quotas.csv"
ALL = "ALL"


def _codes(value: str) -> frozenset[str] | None:
    """'All' (None: any code) or a '; '-separated list of codes."""
    text = value.strip()
    if not text or text.upper() == ALL:
        return None
    return frozenset(code.strip().upper() for code in text.split(";") if code.strip())


@dataclass(frozen=True, slots=True)
class Quota:
    kind: str
    taxon: str
    rank: str
    party: str | None  # None: every exporting Party
    quota: Decimal
    unit: str | None  # None: number of specimens
    terms: frozenset[str] | None
    sources: frozenset[str] | None
    purposes: frozenset[str] | None
    start: date | None
    end: date | None
    notes: str

    def covers(
        self,
        *,
        exporter: str,
        taxon: str,
        term: str | None,
        source: str | None,
        purpose: str | None,
        at: date,
    ) -> bool:
        return (
            (self.party is None or self.party == exporter)
            and in_force(self.start, self.end, at)
            and names_taxon(self.taxon, self.rank, taxon)
            and (self.terms is None or term in self.terms)
            and (self.sources is None or source in self.sources)
            and (self.purposes is None or purpose in self.purposes)
        )


def _quota(row: dict[str, str]) -> Quota | None:
    try:
        amount = Decimal(row["quota"].strip())
    except InvalidOperation:
        return None
    party = row["iso_code2"].strip().upper()
    unit = row["unit"].strip()
    return Quota(
        kind=row["quota_type"].strip(),
        taxon=" ".join(row["taxon_name"].split()),
        rank=row["rank"],
        party=None if party == ALL else party,
        quota=amount,
        unit=None if unit.upper() == ALL or not unit else unit,
        terms=_codes(row["term"]),
        sources=_codes(row["source"]),
        purposes=_codes(row["purpose"]),
        start=parse_sapi_date(row["start_date"]),
        end=parse_sapi_date(row["end_date"]),
        notes=" ".join(row["notes"].split()),
    )


@cache
def quotas() -> tuple[Quota, ...]:
    """All published quotas, read once per process."""
    with DATA.open(encoding="utf-8", newline="") as handle:
        rows = (_quota(row) for row in csv.DictReader(handle) if row["taxon_name"].strip())
        return tuple(quota for quota in rows if quota is not None)


class QuotaIndex:
    """Quotas keyed by (Party, listed name), so a permit line looks at its few candidates only.

    ``names_taxon`` matches a listing only when the listed name is a whole-word prefix of the
    permit's name, both as ``taxon_key`` gives them (species: the name or a prefix of it;
    genus: the first word), so every quota that can cover a name sits under one of its word
    prefixes, for the exporter or for every Party (``None``). ``Quota.covers`` still decides;
    the index only narrows the scan.
    """

    __slots__ = ("_by_key",)

    def __init__(self, table: Iterable[Quota]) -> None:
        by_key: dict[tuple[str | None, str], list[tuple[int, Quota]]] = {}
        for position, quota in enumerate(table):
            by_key.setdefault((quota.party, taxon_key(quota.taxon)), []).append((position, quota))
        self._by_key = by_key

    def covering(
        self,
        *,
        exporter: str,
        taxon: str,
        term: str | None,
        source: str | None,
        purpose: str | None,
        at: date,
    ) -> list[Quota]:
        """The quotas covering this trade, in table order (as a scan of the table finds them)."""
        words = taxon_key(taxon).split()
        prefixes = [" ".join(words[:end]) for end in range(1, len(words) + 1)] or [""]
        candidates: list[tuple[int, Quota]] = []
        for prefix in prefixes:
            candidates += self._by_key.get((exporter, prefix), ())
            candidates += self._by_key.get((None, prefix), ())
        candidates.sort(key=_position)
        return [
            quota
            for _, quota in candidates
            if quota.covers(
                exporter=exporter,
                taxon=taxon,
                term=term,
                source=source,
                purpose=purpose,
                at=at,
            )
        ]


def _position(candidate: tuple[int, Quota]) -> int:
    return candidate[0]


@cache
def quota_index() -> QuotaIndex:
    """The published quotas indexed, built on first use and kept with the table."""
    return QuotaIndex(quotas())
