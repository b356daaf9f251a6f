"""CITES code lists as data: loaded once from ``epix/permits/data``, checked per permit.

An unknown code is an error (EPIX-CODE-001..007); a historic code (still understood but no
longer current: in the guide's historic list or only in the 2018 SAPI code lists) and an
implausible term-unit or term-purpose pair are warnings (EPIX-CODE-101..103). Countries are
ISO 3166-1 alpha-2 from pycountry plus the user-assigned XA-XZ, which EPIX accepts as test
Parties (the Toolkit sample uses XA, XB, XC).
"""

from __future__ import annotations

import csv
import string
from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pycountry

from epix.errors import Finding
from epix.permits import locations as loc
from epix.permits.model import Permit

DATA_DIR = Path(__file__).resolve().parent / "data"
TEST_PARTIES = frozenset(f"X{letter}" for letter in string.ascii_uppercase)

# The 2021 unit revision renamed these units to their UN/CEFACT Rec. 20 codes.
RENAMED_UNITS = {"KIL": "KGM", "SQM": "MTK", "CUM": "MTQ", "CCM": "CMQ"}
# The 2018 SAPI pair lists predate that revision: they write "number of specimens" as an empty
# unit and use the old codes. Map each current/historic unit onto their vocabulary.
_UNIT_IN_PAIRS = {"NAR": "", "PCS": "", **{new: old for old, new in RENAMED_UNITS.items()}}
# The 2018 SAPI term and unit lists, which the CITES Trade Database used until the 2021
# revision, hold codes the 2022 guide no longer names (units KIL, SQM, FEE…, terms HAN, BEL,
# WAL…). Permits written with them are still understood, so they are historic, not unknown.
_SAPI_CODE_LISTS = {"term": "term_codes_utf8.csv", "unit": "unit_codes_utf8.csv"}


@dataclass(frozen=True, slots=True)
class CodeLists:
    current: dict[str, frozenset[str]]
    historic: dict[str, frozenset[str]]
    term_units: dict[str, frozenset[str]]
    term_purposes: dict[str, frozenset[str]]


def _pairs(filename: str) -> dict[str, frozenset[str]]:
    pairs: defaultdict[str, set[str]] = defaultdict(set)
    with (DATA_DIR / filename).open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for row in reader:
            if row and row[0].strip():
                pairs[row[0].strip()].add(row[1].strip() if len(row) > 1 else "")
    return {term: frozenset(values) for term, values in pairs.items()}


def _first_column(filename: str) -> set[str]:
    """The codes in the first column of a SAPI code list (after its header)."""
    with (DATA_DIR / filename).open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        return {row[0].strip() for row in reader if row and row[0].strip()}


@cache
def code_lists() -> CodeLists:
    """The code lists, read once per process."""
    current: defaultdict[str, set[str]] = defaultdict(set)
    historic: defaultdict[str, set[str]] = defaultdict(set)
    with (DATA_DIR / "cites_code_lists.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            target = historic if row["status"] == "historic" else current
            target[row["list"]].add(row["code"])
    for kind, filename in _SAPI_CODE_LISTS.items():
        historic[kind] |= _first_column(filename) - current[kind]
    return CodeLists(
        current={kind: frozenset(codes) for kind, codes in current.items()},
        historic={kind: frozenset(codes) for kind, codes in historic.items()},
        term_units=_pairs("term_unit_pairs_utf8.csv"),
        term_purposes=_pairs("term_purpose_pairs_utf8.csv"),
    )


@cache
def _countries() -> frozenset[str]:
    return frozenset(country.alpha_2 for country in pycountry.countries) | TEST_PARTIES


def is_country(code: str) -> bool:
    """True for an ISO 3166-1 alpha-2 code or a user-assigned test Party (XA-XZ)."""
    return code in _countries()


_UNKNOWN = {
    "document_type": ("EPIX-CODE-001", "document type"),
    "purpose": ("EPIX-CODE-002", "purpose code"),
    "source": ("EPIX-CODE-003", "source code"),
    "appendix": ("EPIX-CODE-004", "appendix"),
    "unit": ("EPIX-CODE-005", "unit of quantity"),
    "term": ("EPIX-CODE-006", "term code"),
}


_NONE: frozenset[str] = frozenset()


def _check(
    lists: CodeLists,
    kind: str,
    code: str | None,
    findings: list[Finding],
    where: str,
    index: int = 0,
) -> bool:
    """Append a finding for an unknown or historic code; True when the code is known.

    ``where`` is a path inside line ``index`` when ``index`` is set; the location string is
    only built for a finding (a current code, the usual case, costs two lookups).
    """
    if code is None:
        return False
    if code in lists.current.get(kind, _NONE):
        return True
    location = loc.line(index, where) if index else where
    error_code, label = _UNKNOWN[kind]
    if code not in lists.historic.get(kind, _NONE):
        findings.append(Finding(error_code, f"Unknown {label} '{code}'.", location))
        return False
    renamed = RENAMED_UNITS.get(code) if kind == "unit" else None
    successor = f"; its current code is '{renamed}'" if renamed else ""
    findings.append(
        Finding(
            "EPIX-CODE-101",
            f"The {label} '{code}' is historic, no longer current{successor}.",
            location,
        )
    )
    return True


def _country(
    countries: frozenset[str],
    code: str | None,
    what: str,
    findings: list[Finding],
    where: str,
    index: int = 0,
) -> None:
    if code is not None and code not in countries:
        findings.append(
            Finding(
                "EPIX-CODE-007",
                f"{what}: '{code}' is not an ISO 3166-1 alpha-2 code.",
                loc.line(index, where) if index else where,
            )
        )


def check_codes(permit: Permit) -> list[Finding]:
    """Every coded box of the permit against the code lists and ISO 3166.

    A current code (the usual case) costs one set lookup inline; ``_check`` and ``_country``,
    which build the findings, are only called for the others, in the same order.
    """
    lists = code_lists()
    countries = _countries()
    findings: list[Finding] = []
    _check(lists, "document_type", permit.document_type, findings, loc.DOCUMENT_TYPE)
    purpose_known = _check(lists, "purpose", permit.purpose, findings, loc.PURPOSE)
    _country(countries, permit.importer.country, "Importer (box 3)", findings, loc.IMPORTER_COUNTRY)
    _country(countries, permit.exporter.country, "Exporter (box 4)", findings, loc.EXPORTER_COUNTRY)
    _country(
        countries,
        permit.issuing_authority.country,
        "Management Authority (box 6)",
        findings,
        loc.AUTHORITY_COUNTRY,
    )
    current = lists.current
    appendices, sources = current.get("appendix", _NONE), current.get("source", _NONE)
    terms, units = current.get("term", _NONE), current.get("unit", _NONE)
    for index, line in enumerate(permit.lines, start=1):
        appendix, source, term, unit = line.appendix, line.source, line.term, line.unit
        if appendix is not None and appendix not in appendices:
            _check(lists, "appendix", appendix, findings, loc.APPENDIX, index)
        if source is not None and source not in sources:
            _check(lists, "source", source, findings, loc.SOURCE, index)
        term_known = term in terms or _check(lists, "term", term, findings, loc.TERM, index)
        unit_known = unit in units or _check(lists, "unit", unit, findings, loc.UNIT, index)
        if line.origin_country is not None and line.origin_country not in countries:
            _country(
                countries,
                line.origin_country,
                "Country of origin (box 12)",
                findings,
                loc.ORIGIN,
                index,
            )
        if line.reexport_country is not None and line.reexport_country not in countries:
            _country(
                countries,
                line.reexport_country,
                "Country of last re-export (box 12a)",
                findings,
                loc.LAST_REEXPORT_COUNTRY,
                index,
            )
        if not term_known or term is None:
            continue
        pairs = lists.term_units.get(term)
        paired = None if unit is None else _UNIT_IN_PAIRS.get(unit, unit)
        if unit_known and pairs is not None and paired is not None and paired not in pairs:
            findings.append(
                Finding(
                    "EPIX-CODE-102",
                    f"Line {line.line_id}: unit '{unit}' is unusual for term '{term}'.",
                    loc.line(index, loc.UNIT),
                )
            )
        purposes = lists.term_purposes.get(term)
        if purpose_known and purposes is not None and permit.purpose not in purposes:
            findings.append(
                Finding(
                    "EPIX-CODE-103",
                    f"Line {line.line_id}: purpose '{permit.purpose}' is unusual for term "
                    f"'{term}'.",
                    loc.line(index, loc.TERM),
                )
            )
    return findings
