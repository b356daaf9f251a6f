"""Dates as the SAPI compliance CSVs write them."""

from __future__ import annotations

from datetime import date, datetime


def parse_sapi_date(value: str) -> date | None:
    """``dd/mm/yyyy`` (optionally with a time) as a date; empty or 'Present' means open-ended."""
    text = value.strip()
    if not text or text.lower() == "present":
        return None
    return datetime.strptime(text.split()[0], "%d/%m/%Y").date()


def in_force(start: date | None, end: date | None, at: date) -> bool:
    return (start is None or start <= at) and (end is None or at <= end)


def taxon_key(name: str) -> str:
    """A scientific name as listings are matched: box 7 is free text, so neither the spacing
    nor the letter case ('PANTHERA PARDUS', 'panthera pardus') may hide a listing."""
    return " ".join(name.split()).casefold()


def names_taxon(listed: str, rank: str, scientific_name: str) -> bool:
    """True when a listing at ``rank`` covers the permit's scientific name.

    Species and subspecies match by name (a species listing covers its subspecies), genera by
    the first word. Higher ranks need a taxonomy EPIX does not hold, so they never match.
    """
    name, listed = taxon_key(scientific_name), taxon_key(listed)
    rank = rank.strip().upper()
    if rank in ("SPECIES", "SUBSPECIES"):
        return name == listed or name.startswith(listed + " ")
    if rank == "GENUS":
        return name.split(" ", 1)[0] == listed
    return False
