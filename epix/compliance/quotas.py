"""Published export quotas (CoP-approved and listing-annotation zero quotas) from SAPI."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path

from epix.permits.sapi_dates import (
    HIGHER_RANKS,
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

DATA = Path(__file__).resolve().parent / "data" / "quotas.csv"
ALL = "ALL"


def _codes(value: str) -> frozenset[str] | None:
    """'All' (None: any code) or a '; '-separated list of codes."""
    text = value.strip()
    if not text or text.upper() == ALL:
        return None
    return frozenset(code.strip().upper() for code in text.split(";") if code.strip())


# What each SAPI quota type is, in words a customs officer reads in a finding.
KIND_LABELS = {
    "CoP_approved": "quota set by the Conference of the Parties",
    "Listing_annotations": "quota in the annotation to the CITES listing",
}
_APPENDIX_MARK = re.compile(r"\*\*(I{1,3})\*\*")


def readable_notes(notes: str) -> str:
    """The SAPI note on one line, its Markdown appendix marks ('**II**') spelt out."""
    return _APPENDIX_MARK.sub(r"Appendix \1:", " ".join(notes.split()))


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
    concept_id: int | None = None  # Species+ id of ``taxon`` (kept when Species+ renames it)

    @property
    def label(self) -> str:
        return KIND_LABELS.get(self.kind, self.kind)

    @property
    def scope(self) -> str:
        """The trade the quota is limited to ('source W, purpose T'), or '' for all of it."""
        limits = (("source", self.sources), ("purpose", self.purposes), ("term", self.terms))
        return ", ".join(f"{what} {'/'.join(sorted(codes))}" for what, codes in limits if codes)

    @property
    def for_appendix_ii(self) -> bool:
        """True for a quota from a listing annotation: every one in the table limits a species
        or population the annotation places in Appendix II (the crocodile populations
        'included in Appendix II ... subject to a zero quota', 'Felidae spp. ... except the
        species included in Appendix I'), so it never covers what box 10 declares Appendix I,
        such as a subspecies listed there on its own (Panthera leo persica)."""
        return self.kind == "Listing_annotations"

    def names(
        self,
        taxon: str,
        at: date,
        within: frozenset[str] = frozenset(),
        ids: frozenset[int] = frozenset(),
    ) -> bool:
        """True when the quota, in force on ``at``, is listed under a Species+ id among the
        line's ``ids`` (``Naming.ids``), a name covering ``taxon``, or a higher taxon Species+
        places it ``within``."""
        return in_force(self.start, self.end, at) and covers_taxon(
            self.taxon, self.rank, taxon, within, self.concept_id, ids
        )

    def covers(
        self,
        *,
        exporter: str,
        taxon: str,
        appendix: str | None,
        term: str | None,
        source: str | None,
        purpose: str | None,
        at: date,
        within: frozenset[str] = frozenset(),
        ids: frozenset[int] = frozenset(),
    ) -> bool:
        return (
            (self.party is None or self.party == exporter)
            and self.names(taxon, at, within, ids)
            and not (self.for_appendix_ii and appendix == "I")
            and (self.terms is None or term in self.terms)
            and (self.sources is None or source in self.sources)
            and (self.purposes is None or purpose in self.purposes)
        )


COLUMNS = (
    "quota_type",
    "start_date",
    "end_date",
    "taxon_name",
    "rank",
    "iso_code2",
    "quota",
    "unit",
    "term",
    "source",
    "purpose",
    "notes",
)


def _amount(value: str) -> Decimal:
    try:
        amount = Decimal(value.strip())
    except InvalidOperation:
        amount = Decimal("NaN")
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"quota {value!r} is not a number of zero or more")
    return amount


def _quota(row: dict[str, str]) -> Quota:
    """One row as a Quota, or ValueError naming the malformed field."""
    taxon, rank = listed_name(row)
    unit = row["unit"].strip()
    start, end = parse_sapi_date(row["start_date"]), parse_sapi_date(row["end_date"])
    if start is not None and end is not None and end < start:
        raise ValueError(f"end date {row['end_date']!r} is before start date {row['start_date']!r}")
    return Quota(
        kind=row["quota_type"].strip(),
        taxon=taxon,
        rank=rank,
        party=None if row["iso_code2"].strip().upper() == ALL else party_code(row["iso_code2"]),
        quota=_amount(row["quota"]),
        unit=None if unit.upper() == ALL or not unit else unit,
        terms=_codes(row["term"]),
        sources=_codes(row["source"]),
        purposes=_codes(row["purpose"]),
        start=start,
        end=end,
        notes=readable_notes(row["notes"]),
        concept_id=concept_id(row),
    )


def load_quotas(path: Path) -> tuple[Quota, ...]:
    """Every quota of a SAPI quota table; ReferenceDataError names a malformed row's line."""
    table = []
    for line, row in read_sapi_table(path, COLUMNS):
        try:
            table.append(_quota(row))
        except ValueError as exc:
            raise ReferenceDataError(f"{path} line {line}: {exc}.") from None
    return tuple(table)


@cache
def quotas() -> tuple[Quota, ...]:
    """All published quotas, read once per process."""
    return load_quotas(DATA)


class QuotaIndex:
    """Quotas keyed by (Party, listed name), so a permit line looks at its few candidates only.

    ``covers_taxon`` matches a listing by name only when the listed name is a whole-word prefix
    of the permit's name, both as ``taxon_key`` gives them (genus: the first word; any other
    rank: the name or a prefix of it), so every quota that can cover a name by name sits under
    one of its word prefixes, for the exporter or for every Party (``None``).

    Only the longest of those prefixes that the table lists (for any Party, in force on the
    day) counts: a taxon the table gives its own quotas is listed apart from its species or
    genus, whose quotas then do not reach it (the zero quota for wild Saiga borealis mongolica
    is its own, not also the species'). Without one, the narrowest higher taxon (family,
    order...) the taxonomy places the taxon ``within`` that the table lists counts. A name
    whose quotas carry a Species+ id among the line's ``ids`` competes with those by how
    narrow it is: its words below the genus, its rank above it (a quota on the taxon listed
    under a name Species+ no longer gives it is the taxon's own).
    ``Quota.covers`` decides among that name's quotas.
    """

    __slots__ = ("_by_id", "_by_key", "_by_name", "_higher")

    def __init__(self, table: Iterable[Quota]) -> None:
        by_key: dict[tuple[str | None, str], list[tuple[int, Quota]]] = {}
        by_name: dict[str, list[Quota]] = {}
        higher: dict[str, int] = {}  # names listed above the genus: how narrow the rank is
        by_id: dict[int, set[str]] = {}  # Species+ id: the names its quotas are listed under
        for position, quota in enumerate(table):
            key = taxon_key(quota.taxon)
            by_key.setdefault((quota.party, key), []).append((position, quota))
            by_name.setdefault(key, []).append(quota)
            if quota.concept_id is not None:
                by_id.setdefault(quota.concept_id, set()).add(key)
            if quota.rank in HIGHER_RANKS:
                narrowness = HIGHER_RANKS.index(quota.rank)
                higher[key] = min(narrowness, higher.get(key, narrowness))
        self._by_id = by_id
        self._by_key = by_key
        self._by_name = by_name
        self._higher = higher

    def _narrowness(self, name: str) -> int:
        """How narrow a listed name is: its words below the genus, less than nothing above."""
        above = self._higher.get(name)
        return len(name.split()) if above is None else -1 - above

    def listed_names(
        self,
        taxon: str,
        at: date,
        within: frozenset[str] = frozenset(),
        ids: frozenset[int] = frozenset(),
    ) -> tuple[str, ...]:
        """The most specific names under which the table lists quotas in force on ``at`` for
        ``taxon``: by one of its Species+ ``ids``, by name (as ``taxon_key`` gives it), or as
        the higher taxon it is ``within``. Several only when the table lists one taxon under
        an old and a new name (met by id and by name alike)."""
        found = None
        words = taxon_key(taxon).split()
        for end in range(len(words), -1, -1):  # the longest word prefix listed
            prefix = " ".join(words[:end])
            if any(quota.names(taxon, at) for quota in self._by_name.get(prefix, ())):
                found = prefix
                break
        else:  # the narrowest higher taxon listed
            listed_above = within & self._higher.keys() if within and self._higher else ()
            for name in sorted(listed_above, key=self._higher.__getitem__):
                if any(quota.names(taxon, at, within) for quota in self._by_name[name]):
                    found = name
                    break
        listed_ids = ids & self._by_id.keys() if ids else ()
        if not listed_ids:
            return () if found is None else (found,)
        listed = {
            name
            for concept_id in listed_ids
            for name in self._by_id[concept_id]
            if any(quota.names(taxon, at, within, ids) for quota in self._by_name[name])
        }
        if found is not None:
            listed.add(found)
        if not listed:  # the quotas under its ids are not in force on ``at``
            return ()
        narrowest = max(map(self._narrowness, listed))
        return tuple(sorted(name for name in listed if self._narrowness(name) == narrowest))

    def covering(
        self,
        *,
        exporter: str,
        taxon: str,
        appendix: str | None,
        term: str | None,
        source: str | None,
        purpose: str | None,
        at: date,
        within: frozenset[str] = frozenset(),
        ids: frozenset[int] = frozenset(),
    ) -> list[Quota]:
        """The quotas covering this trade, in table order; ``within``: the higher taxa the
        taxonomy places ``taxon`` under (``Naming.within``), ``ids`` its Species+ ids
        (``Naming.ids``)."""
        candidates: list[tuple[int, Quota]] = []
        for name in self.listed_names(taxon, at, within, ids):
            candidates += self._by_key.get((exporter, name), ())
            candidates += self._by_key.get((None, name), ())
        candidates.sort(key=_position)
        return [
            quota
            for _, quota in candidates
            if quota.covers(
                exporter=exporter,
                taxon=taxon,
                appendix=appendix,
                term=term,
                source=source,
                purpose=purpose,
                at=at,
                within=within,
                ids=ids,
            )
        ]


def _position(candidate: tuple[int, Quota]) -> int:
    return candidate[0]


@cache
def quota_index() -> QuotaIndex:
    """The published quotas indexed, built on first use and kept with the table."""
    return QuotaIndex(quotas())
