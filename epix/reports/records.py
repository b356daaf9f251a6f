"""A trade record of the annual report: one permit line as a Party traded it in a year."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

COLUMNS = (
    "year",
    "direction",
    "permit_type",
    "permit_number",
    "issued_on",
    "issuing_party",
    "appendix",
    "taxon",
    "term",
    "quantity",
    "unit",
    "basis",
    "exporter",
    "importer",
    "origin",
    "origin_permit",
    "purpose",
    "source",
    "endorsed_on",
    "port",
    "permit_status",
)


@dataclass(frozen=True, slots=True)
class TradeRecord:
    """One permit line as the reporting Party traded it in the year."""

    year: int
    direction: str  # export | re-export | import
    permit_type: str
    permit_number: str
    issued_on: date | None  # box 13
    issuing_party: str
    appendix: str | None
    taxon: str | None
    term: str | None
    quantity: Decimal
    unit: str | None
    basis: str  # EXPORT_ENDORSED | IMPORT_ENDORSED | PERMIT_ISSUED
    exporter: str | None
    importer: str | None
    origin: str | None
    origin_permit: str | None
    purpose: str | None
    source: str | None
    endorsed_on: date | None
    port: str | None
    permit_status: str

    def as_row(self) -> list[str]:
        """The record as CSV cells, in the order of ``COLUMNS``."""
        values: list[object] = [getattr(self, column) for column in COLUMNS]
        return [_cell(value) for value in values]

    def as_csv_row(self) -> list[str]:
        """``as_row`` for a spreadsheet: box 7, the permit number and the port are free text
        another Party may have written, so a cell a spreadsheet would run as a formula starts
        with an apostrophe (quantities and dates never start so)."""
        return [_inert(cell) for cell in self.as_row()]


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _inert(cell: str) -> str:
    return f"'{cell}" if cell.startswith(_FORMULA_STARTS) else cell
