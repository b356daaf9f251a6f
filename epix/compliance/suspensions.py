"""Trade suspensions from Species+ (Art. XIII, Res. Conf. 14.3; stricter domestic measures,
Art. XIV.1), narrowed by the SAPI exemptions: warnings only.

EPIX holds no suspension list of its own: only the Species+ ``cites_legislation`` answers for
three taxa in ``data/speciesplus`` (November 2022). Of those, it uses the suspensions it can
name: the ones for every CITES-listed species of a country (``taxon_concept_id`` null) and the
ones attached to a taxon concept the taxonomy holds (``epix.compliance.taxonomy``): the bundled
one gives *Loxodonta africana*. The two attached to higher taxa (birds of Argentina, terrestrial
fauna of the Philippines, Species+ ids 32 and 23) are named by no bundled answer and are left
out unless the operator's Species+ answers hold those ids; a suspension on a higher taxon then
covers the lines whose taxon Species+ places under it. The coverage is what those files hold,
nothing more.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, replace
from datetime import date
from functools import cache
from itertools import takewhile
from pathlib import Path
from typing import Any

from epix.compliance.taxonomy import TaxonConcept, Taxonomy, screened_as, taxonomy
from epix.permits.codes import code_lists
from epix.permits.sapi_dates import (
    RANKS,
    ReferenceDataError,
    covers_taxon,
    in_force,
    parse_sapi_date,
    party_code,
    species_plus_id,
    taxon_in_words,
)

DATA = Path(__file__).resolve().parent / "data"
EXEMPTIONS = DATA / "exemptions.csv"
SPECIES_PLUS = DATA / "speciesplus"
ALL = "ALL"
_TAG = re.compile(r"<[^>]+>")
_CODE_LIST = re.compile(r"[A-Z]{1,3}(, ?[A-Z]{1,3})*")


@dataclass(frozen=True, slots=True)
class Exemption:
    """What one suspension does not cover: a taxon, or terms, sources or purposes."""

    party: str | None  # None: a suspension for every Party (the IWC whales)
    taxon: str | None  # None: every taxon the suspension covers
    rank: str
    start: date | None
    terms: frozenset[str] | None  # None: not limited by term
    sources: frozenset[str] | None
    purposes: frozenset[str] | None
    concept_id: int | None = None  # Species+ id of ``taxon`` (kept when Species+ renames it)

    def exempts(
        self,
        taxon: str,
        term: str | None,
        source: str | None,
        purpose: str | None,
        within: frozenset[str] = frozenset(),
        ids: frozenset[int] = frozenset(),
    ) -> bool:
        """True when the line is outside the suspension: of an exempted taxon whose row names
        no code, or of a term, source or purpose the row names. The row's taxon meets the
        line's as the suspension's does (``covers_taxon``: by Species+ id among the line's
        ``ids``, by name, or a higher taxon the line's is ``within``), so a row still named as
        Species+ no longer names its taxon exempts it all the same."""
        if self.taxon is not None and not covers_taxon(
            self.taxon, self.rank, taxon, within, self.concept_id, ids
        ):
            return False
        limits = [
            (codes, code)
            for codes, code in (
                (self.terms, term),
                (self.sources, source),
                (self.purposes, purpose),
            )
            if codes is not None
        ]
        return not limits or any(code in codes for codes, code in limits)


def _merged_fields(row: list[str]) -> list[str]:
    """The fields of a SAPI exemption row with its unquoted code lists joined again: upstream
    writes 'Z, G, Q, S' without quotes, so each ', X' after the first code is its own field."""
    merged: list[str] = []
    for field in row:
        if merged and re.fullmatch(r" [A-Z]{1,3}", field):
            merged[-1] += "," + field
        else:
            merged.append(field)
    return merged


def _codes(field: str) -> list[str]:
    return [code.strip().upper() for code in field.split(",") if code.strip()]


def _exemption(row: list[str]) -> Exemption:
    """One row as an Exemption, or ValueError naming what is wrong. After the unit come the
    term, source and purpose; a source list may run on into the purposes (India's 'A, C, D, F,
    I, S, H, P, ...'), which the two disjoint code lists tell apart."""
    fields = _merged_fields(row)
    if len(fields) < 10:
        raise ValueError("too few fields")
    start, _end, taxon, listed_id, rank, party, _unit = (field.strip() for field in fields[:7])
    lists = code_lists().current
    slots: dict[str, frozenset[str] | None] = {}
    rest = iter(fields[7:])
    while len(slots) < 3:
        field = next(rest, None)
        if field is None:
            raise ValueError("no term, source and purpose")
        slot = ("term", "source", "purpose")[len(slots)]
        if field.strip().upper() == ALL:
            slots[slot] = None
            continue
        if slot == "purpose" and not _CODE_LIST.fullmatch(field.strip()):
            slots[slot] = None  # a source list that ran on into the notes: no purpose given
            continue
        codes = _codes(field)
        if slot == "source":
            sources = list(takewhile(lists["source"].__contains__, codes))
            if not sources:
                raise ValueError(f"source {field.strip()!r} is not a list of CITES source codes")
            codes = codes[len(sources) :]
            slots["source"] = frozenset(sources)
            if not codes:
                continue
            slot = "purpose"
        # Terms are only shape-checked: the row may name codes newer than EPIX's lists (DFN).
        known = lists["purpose"] if slot == "purpose" else None
        unknown = sorted(
            code
            for code in codes
            if (code not in known if known is not None else not re.fullmatch("[A-Z]{3}", code))
        )
        if unknown:
            raise ValueError(f"{slot} code {', '.join(unknown)} is not a CITES {slot} code")
        slots[slot] = frozenset(codes)
    if rank.upper() != ALL and rank.upper() not in RANKS:
        raise ValueError(f"rank {rank!r} is not a taxonomic rank")
    return Exemption(
        party=None if party.upper() == ALL else party_code(party),
        taxon=None if taxon.upper() == ALL else " ".join(taxon.split()),
        rank=rank.upper(),
        concept_id=None if listed_id.upper() == ALL else species_plus_id(listed_id),
        start=parse_sapi_date(start),
        terms=slots["term"],
        sources=slots["source"],
        purposes=slots["purpose"],
    )


def load_exemptions(path: Path) -> tuple[Exemption, ...]:
    """Every row of the SAPI exemption table; ReferenceDataError names a malformed row."""
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise ReferenceDataError(f"{path} cannot be read: {exc.strerror}.") from None
    table = []
    with handle:
        reader = csv.reader(handle)
        try:
            next(reader, None)
            for row in reader:
                try:
                    table.append(_exemption(row))
                except ValueError as exc:
                    raise ReferenceDataError(f"{path} line {reader.line_num}: {exc}.") from None
        except (UnicodeDecodeError, csv.Error) as exc:
            raise ReferenceDataError(f"{path} is not a readable CSV file: {exc}.") from None
    return tuple(table)


@dataclass(frozen=True, slots=True)
class Suspension:
    country: str
    taxon: str | None  # None: every CITES-listed species of the country
    start: date
    end: date | None
    # Species+ marks the entry as applying to imports: the country's own import measures (the
    # United States on elephant trophies) but also requests about imports from it (Zimbabwe's
    # ivory carvings), so the country may be on either side of the trade.
    applies_to_import: bool
    notes: str
    notification: str  # "CITES Notif. No. 2011/010"
    exemptions: tuple[Exemption, ...] = ()
    rank: str = "SPECIES"  # of ``taxon``, as Species+ gives it
    concept_id: int | None = None  # Species+ id of ``taxon``

    def names(self, taxon: str, within: frozenset[str], ids: frozenset[int] = frozenset()) -> bool:
        """True when the suspension is for every taxon, or its taxon covers the line's as a
        quota's does (``covers_taxon``: by Species+ id among the line's ``ids``, by name, or a
        higher taxon the line's is ``within``)."""
        return self.taxon is None or covers_taxon(
            self.taxon, self.rank, taxon, within, self.concept_id, ids
        )

    @property
    def domestic(self) -> bool:
        """A Party's own stricter measure (Art. XIV.1), not a recommendation to all Parties."""
        return self.applies_to_import or "stricter domestic measure" in self.notes.lower()

    @property
    def basis(self) -> str:
        return (
            "a stricter domestic measure, Art. XIV.1"
            if self.domestic
            else ("a recommendation to suspend trade, Art. XIII and Res. Conf. 14.3")
        )

    def covers(
        self,
        *,
        exporter: str | None,
        importer: str | None,
        taxon: str,
        term: str | None,
        source: str | None,
        purpose: str | None,
        at: date,
        within: frozenset[str] = frozenset(),
        ids: frozenset[int] = frozenset(),
    ) -> bool:
        """True when the line is traded under this suspension: exported from the country (or
        imported into it, for an entry applying to imports), of its taxon (``within``: the
        taxa Species+ places the line's under, ``ids`` their Species+ ids), in force, and not
        exempted."""
        parties = (exporter, importer) if self.applies_to_import else (exporter,)
        return (
            self.country in parties
            and in_force(self.start, self.end, at)
            and self.names(taxon, within, ids)
            and not any(
                entry.exempts(taxon, term, source, purpose, within, ids)
                for entry in self.exemptions
            )
        )


def describe(suspension: Suspension) -> str:
    """The suspension in words for a finding: who published it, on what basis, for what, and
    how far EPIX could check it."""
    role = "trade, imports included, with" if suspension.applies_to_import else "exports from"
    what = (
        "every CITES-listed species"
        if suspension.taxon is None
        else taxon_in_words(suspension.taxon, suspension.rank)
    )
    published = f"{suspension.notification}, " if suspension.notification else ""
    notes = suspension.notes if suspension.notes.endswith(".") else f"{suspension.notes}."
    text = (
        f"{published}since {suspension.start.isoformat()} ({suspension.basis}), concerns "
        f'{role} {suspension.country} of {what}: "{notes}"'
    )
    exempt = sorted(
        {
            f"{kind} {'/'.join(sorted(codes))}"
            for entry in suspension.exemptions
            if entry.taxon is None
            for kind, codes in (
                ("term", entry.terms),
                ("source", entry.sources),
                ("purpose", entry.purposes),
            )
            if codes is not None
        }
    )
    if exempt:
        return f"{text} UNEP-WCMC reads it as not covering {', '.join(exempt)}."
    return (
        f"{text} EPIX holds no reading of its scope (purposes, sources, specimens): check "
        "whether this line is within it."
    )


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReferenceDataError(f"{path} cannot be read: {exc.strerror}.") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ReferenceDataError(f"{path} is not a readable JSON file: {exc}.") from None


def _suspension(entry: dict[str, Any], taxon: TaxonConcept | None) -> Suspension:
    """The entry as a Suspension, without its exemptions (``load_suspensions`` adds them)."""
    country = party_code(entry["geo_entity"]["iso_code2"])
    start = date.fromisoformat(entry["start_date"])
    end = date.fromisoformat(entry["end_date"]) if entry.get("end_date") else None
    return Suspension(
        country=country,
        taxon=None if taxon is None else taxon.full_name,
        rank="SPECIES" if taxon is None else taxon.rank,
        concept_id=None if taxon is None else taxon.id,
        start=start,
        end=end,
        applies_to_import=bool(entry["applies_to_import"]),
        notes=" ".join(_TAG.sub("", str(entry["notes"])).split()),
        notification=str((entry.get("start_notification") or {}).get("name") or ""),
    )


def _narrows(
    row: Exemption, suspension: Suspension, same_day: frozenset[int | None], names: Taxonomy
) -> bool:
    """True when the exemption ``row`` belongs to ``suspension``. A row carries no suspension
    id, only what identifies one: its Party, start date and taxon (the Species+ id;
    ALL for a country-wide suspension). ``same_day``: the taxon ids of every suspension the
    answers hold for that Party and start date, named or not. A row whose id none of them is
    on names a taxon a wider one leaves out (Paraguay's 2011 suspension of commercial trade,
    not of the timber and oil of Bulnesia sarmientoi): it narrows those covering its taxon.
    Party and date alone would let a row for one suspension (Argentina's on Caiman
    latirostris, 2006) exempt the line from another of the same day."""
    if row.start != suspension.start or row.party not in (None, suspension.country):
        return False
    if row.taxon is None:
        return suspension.taxon is None
    if row.concept_id is not None and row.concept_id in same_day:
        return suspension.concept_id == row.concept_id
    concept = None if row.concept_id is None else names.concept(row.concept_id)
    if concept is not None:
        within, ids = concept.within, names.lineage(concept)
    else:
        _, within, ids = screened_as(row.taxon, names.naming(row.taxon))
    ids |= {row.concept_id} if row.concept_id is not None else frozenset()
    return suspension.names(row.taxon, within, ids)


def load_suspensions(
    folder: Path, exemptions: tuple[Exemption, ...], names: Taxonomy
) -> tuple[Suspension, ...]:
    """The suspensions of the Species+ answers in ``folder`` that EPIX can name (country-wide,
    or on a taxon concept ``names`` holds), each with the exemptions that belong to it
    (``_narrows``); ReferenceDataError names a malformed one."""
    found: dict[int, Suspension] = {}
    days: dict[tuple[str, date], set[int | None]] = {}  # the taxa suspended by Party and day
    for path in sorted(folder.glob("cites_legislation_*.json")):
        for entry in _json(path).get("cites_suspensions", ()):
            try:
                concept_id = entry["taxon_concept_id"]
                concept_id = None if concept_id is None else int(concept_id)
                concept = None if concept_id is None else names.concept(concept_id)
                day = (
                    party_code(entry["geo_entity"]["iso_code2"]),
                    date.fromisoformat(entry["start_date"]),
                )
                days.setdefault(day, set()).add(concept_id)
                if concept_id is not None and concept is None:
                    continue  # a taxon no Species+ answer the node holds names
                found[int(entry["id"])] = _suspension(entry, concept)
            except (KeyError, TypeError, ValueError) as exc:
                raise ReferenceDataError(
                    f"{path}: suspension {entry.get('id')!r} is malformed ({exc})."
                ) from None
    held = {day: frozenset(taxa) for day, taxa in days.items()}
    return tuple(
        replace(
            suspension,
            exemptions=tuple(
                row
                for row in exemptions
                if _narrows(row, suspension, held[suspension.country, suspension.start], names)
            ),
        )
        for suspension in found.values()
    )


@cache
def suspensions() -> tuple[Suspension, ...]:
    """The packaged suspensions with their exemptions, read once per process."""
    return load_suspensions(SPECIES_PLUS, load_exemptions(EXEMPTIONS), taxonomy())


@cache
def _by_country() -> dict[str, tuple[Suspension, ...]]:
    by_country: dict[str, list[Suspension]] = {}
    for suspension in suspensions():
        by_country.setdefault(suspension.country, []).append(suspension)
    return {country: tuple(found) for country, found in by_country.items()}


def suspensions_concerning(*parties: str | None) -> tuple[Suspension, ...]:
    """The suspensions published for any of ``parties``: only these can cover their trade, so a
    permit's lines are checked against a handful, not the whole table."""
    by_country = _by_country()
    return tuple(found for party in parties if party for found in by_country.get(party, ()))
