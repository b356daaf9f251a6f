"""Reading the SAPI compliance CSVs (quotas, reservations): rows, dates and listed names."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from pathlib import Path

# Ranks a SAPI listing may name; a rank outside them is a malformed row, not a silent non-match.
RANKS = frozenset(
    {"KINGDOM", "PHYLUM", "CLASS", "ORDER", "FAMILY", "SUBFAMILY", "GENUS", "SPECIES"}
    | {"SUBSPECIES", "VARIETY"}
)
# Ranks above the genus: a listing at one of them covers the taxa Species+ places under it.
HIGHER_RANKS = ("SUBFAMILY", "FAMILY", "ORDER", "CLASS", "PHYLUM", "KINGDOM")  # narrowest first
_PARTY = re.compile(r"[A-Z]{2}")


class ReferenceDataError(Exception):
    """A packaged reference table is missing or has a malformed row. The node refuses to start
    on it: screening against part of a table would pass what the missing rows would flag."""


def read_sapi_table(path: Path, columns: Iterable[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line, row)`` for every row of a SAPI CSV, once the file and its header are checked.

    ``line`` is where the row ends in the file (a quoted note may span lines)."""
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise ReferenceDataError(f"{path} cannot be read: {exc.strerror}.") from None
    with handle:
        try:
            reader = csv.DictReader(handle)
            missing = sorted(set(columns) - set(reader.fieldnames or ()))
            if missing:
                raise ReferenceDataError(f"{path} has no column {', '.join(missing)}.")
            for row in reader:
                yield reader.line_num, row
        except (UnicodeDecodeError, csv.Error) as exc:
            raise ReferenceDataError(f"{path} is not a readable CSV file: {exc}.") from None


def parse_sapi_date(value: str) -> date | None:
    """``dd/mm/yyyy`` (optionally with a time) as a date; empty or 'Present' means open-ended."""
    text = value.strip()
    if not text or text.lower() == "present":
        return None
    try:
        return datetime.strptime(text.split()[0], "%d/%m/%Y").date()
    except ValueError:
        raise ValueError(f"date {value!r} is not a dd/mm/yyyy date") from None


def listed_name(row: dict[str, str]) -> tuple[str, str]:
    """The row's listed taxon (single-spaced) and rank, or ValueError naming what is wrong."""
    taxon = " ".join(row["taxon_name"].split())
    rank = row["rank"].strip().upper()
    if not taxon:
        raise ValueError("no taxon name")
    if rank not in RANKS:
        raise ValueError(f"rank {row['rank']!r} is not a taxonomic rank")
    return taxon, rank


def concept_id(row: dict[str, str]) -> int | None:
    """The row's Species+ taxon concept id (``taxon_concept_id``), None when the table gives
    none, or ValueError. UNEP-WCMC keeps a row's id when Species+ renames its taxon, so the id
    still finds the taxon a row's name no longer does."""
    return species_plus_id(row.get("taxon_concept_id") or "")


def species_plus_id(field: str) -> int | None:
    """A table field holding a Species+ taxon concept id: the id, None when empty, or
    ValueError."""
    value = field.strip()
    if not value:
        return None
    if not value.isascii() or not value.isdigit():
        raise ValueError(f"taxon_concept_id {value!r} is not a Species+ id")
    return int(value)


def party_code(value: str) -> str:
    """An ISO 3166-1 alpha-2 Party code, or ValueError."""
    code = value.strip().upper()
    if not _PARTY.fullmatch(code):
        raise ValueError(f"Party {value!r} is not an ISO 3166-1 alpha-2 code")
    return code


def in_force(start: date | None, end: date | None, at: date) -> bool:
    return (start is None or start <= at) and (end is None or at <= end)


def taxon_key(name: str) -> str:
    """A scientific name as listings are matched: box 7 is free text, so neither the spacing
    nor the letter case ('PANTHERA PARDUS', 'panthera pardus') may hide a listing."""
    return " ".join(name.split()).casefold()


def names_taxon(listed: str, rank: str, scientific_name: str) -> bool:
    """True when a listing at ``rank`` covers the permit's scientific name by the name alone.

    A genus matches by the first word; any other rank by the name, or a name it begins
    (whole words): a species covers its subspecies and varieties, a family a box 7 naming it
    ('Trochilidae spp.'). The taxa under a higher rank need the taxonomy (``covers_taxon``).
    """
    name, listed = taxon_key(scientific_name), taxon_key(listed)
    if rank.strip().upper() == "GENUS":
        return name.split(" ", 1)[0] == listed
    return name == listed or name.startswith(listed + " ")


def taxon_in_words(taxon: str, rank: str) -> str:
    """A listed taxon in a finding's words: 'the family Platysternidae' above the genus (a box
    7 name under it does not show it), else the name."""
    return f"the {rank.lower()} {taxon}" if rank in HIGHER_RANKS else taxon


def covers_taxon(
    listed: str,
    rank: str,
    scientific_name: str,
    within: frozenset[str] = frozenset(),
    listed_id: int | None = None,
    ids: frozenset[int] = frozenset(),
) -> bool:
    """True when a listing (quota, suspension, reservation, or an exemption narrowing a
    suspension) at ``rank`` covers box 7's name.

    By id first: the listing's Species+ id (``listed_id``) is one of the line's ``ids`` (its
    taxon, that taxon's synonyms and the taxa above it that Species+ answers hold), so a row
    still named as Species+ no longer names the taxon meets it. Then by name
    (``names_taxon``), or, above the genus, because it is one of the taxa Species+ places the
    line's taxon ``within`` (``taxon_key`` names). ``ids`` and ``within`` are empty for a
    taxon the taxonomy does not hold: names alone then decide."""
    if listed_id is not None and listed_id in ids:
        return True
    if names_taxon(listed, rank, scientific_name):
        return True
    return bool(within) and rank.strip().upper() in HIGHER_RANKS and taxon_key(listed) in within
