"""A Party's annual-report trade data (Art. VIII.7), from the permits and endorsements on this node.

Art. VIII.7(a) asks each Party for the number and type of permits granted, the States traded
with, and the quantities, types and species of specimens. Resolution Conf. 11.17 (Rev. CoP19)
asks for actual trade where it is known, else for what the permits allowed, saying which. So
each trade record says what its quantity rests on:

- ``export endorsed``: the quantity customs endorsed when the specimens left (box 14);
- ``import endorsed``: the quantity the importing Party's customs found on arrival, when the
  export was not endorsed through EPIX;
- ``permit issued``: nothing was endorsed; the quantity the permit allowed (box 11), for a permit
  issued in the year and neither cancelled nor replaced.

Each permit line falls in one year of the exporting Party's report (the year of its export
endorsement, else of its import endorsement, else of issue) and, once imported, in one year of
the importing Party's report: a permit is never counted twice, nor is an Appendix I shipment
whose import permit customs endorsed beside the export document that names it (in the year of
the export document's endorsement, when the two fall either side of New Year). A node knows
only the permits exchanged through it, so the report covers electronic permits only; paper
permits are reported as before.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from epix.audit.context import RequestContext
from epix.audit.service import record_event
from epix.auth.principal import Principal
from epix.auth.scoping import may_see_party
from epix.db import Database
from epix.endorsements.document import Side
from epix.endorsements.models import Endorsement
from epix.errors import EpixError
from epix.exchange.lookup import effective_status, verified_permit
from epix.exchange.models import Permit
from epix.exchange.status import CANCELLED, REPLACED
from epix.permits.model import DOC_IMPORT_PERMIT, printed_number
from epix.permits.model import Permit as PermitBoxes
from epix.permits.sapi_dates import taxon_key
from epix.reports.quota_use import QuotaUse, quota_use
from epix.reports.records import COLUMNS, TradeRecord

ACTION_ANNUAL_REPORT = "report.annual"
FIRST_YEAR = 1975  # the Convention entered into force on 1 July 1975
EXPORT_DOCUMENTS = {"E": "export", "R": "re-export", "O": "export"}
WITHDRAWN = frozenset({CANCELLED, REPLACED})

EXPORT_ENDORSED = "export endorsed"
IMPORT_ENDORSED = "import endorsed"
PERMIT_ISSUED = "permit issued"


@dataclass(frozen=True, slots=True)
class AnnualReport:
    """What ``annual_report`` found for one Party and year."""

    party: str
    year: int
    generated_at: datetime
    permits_granted: dict[str, int]  # by document type, issued in the year
    permits_withdrawn: dict[str, int]  # of those, cancelled or replaced
    records: tuple[TradeRecord, ...]
    quota_use: tuple[QuotaUse, ...]  # published export quotas the year's exports fall under
    unreadable: tuple[str, ...]  # permits whose signature no longer verifies: not read

    def as_dict(self) -> dict[str, object]:
        return {
            "party": self.party,
            "year": self.year,
            "generated_at": self.generated_at.isoformat(),
            "coverage": "permits and endorsements exchanged through this node only",
            "permits_granted": self.permits_granted,
            "permits_withdrawn": self.permits_withdrawn,
            "records": [
                dict(zip(COLUMNS, record.as_row(), strict=True)) for record in self.records
            ],
            "quota_use": [use.as_dict() for use in self.quota_use],
            "unreadable_permits": list(self.unreadable),
        }

    def to_csv(self) -> str:
        """The trade records as CSV with a header row (RFC 4180 line ends), no cell a
        spreadsheet would run as a formula (``TradeRecord.as_csv_row``)."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        writer.writerows(record.as_csv_row() for record in self.records)
        return out.getvalue()


def check_year(year: int, today: date) -> None:
    """Refuse (EPIX-REQ-004) a year before the Convention or after the current one."""
    if not FIRST_YEAR <= year <= today.year:
        raise EpixError.of(
            "EPIX-REQ-004",
            f"There is no annual report for {year}: the year must be between {FIRST_YEAR} "
            f"(the Convention's entry into force) and {today.year}.",
            "year",
        )


def _issue_year(row: Permit, boxes: PermitBoxes) -> int:
    """Box 13's year, else the validity's start, else when the node received the permit: the
    year the date says in the issuing Party's own zone, as ``issued_on`` shows it (1 January
    at 00:30 UTC+3 is that year's, not the last day of the year before in UTC)."""
    return (boxes.issued_at or boxes.valid_from or row.created_at).year


# A permit line's part in a record: its line id, the quantity and the unit.
_Quantity = tuple[str | None, Decimal, str | None]


def _records(
    row: Permit,
    boxes: PermitBoxes,
    quantities: Iterable[_Quantity],
    *,
    direction: str,
    basis: str,
    endorsement: Endorsement | None,
    year: int,
    status: str,
) -> list[TradeRecord]:
    """One record per line in ``quantities``, its boxes read from the signed permit."""
    records = []
    for line_id, quantity, unit in quantities:
        line = boxes.line(line_id) if line_id is not None else None
        records.append(
            TradeRecord(
                year=year,
                direction=direction,
                permit_type=row.document_type,
                permit_number=row.number,
                issued_on=boxes.issued_at.date() if boxes.issued_at else None,
                issuing_party=row.issuing_party,
                appendix=line.appendix if line else None,
                taxon=line.scientific_name if line else None,
                term=line.term if line else None,
                quantity=quantity,
                unit=unit,
                basis=basis,
                exporter=boxes.exporter.country or row.issuing_party,
                importer=boxes.importer.country or row.recipient_party,
                origin=line.origin_country if line else None,
                origin_permit=line.origin_permit.id if line and line.origin_permit else None,
                purpose=boxes.purpose,
                source=line.source if line else None,
                endorsed_on=endorsement.endorsed_on if endorsement else None,
                port=endorsement.port if endorsement else None,
                permit_status=status,
            )
        )
    return records


def _endorsed_quantities(row: Permit, endorsement: Endorsement) -> list[_Quantity]:
    """The line id, quantity and unit of each permit line ``endorsement`` recorded."""
    line_ids = {line.id: line.line_id for line in row.lines}
    return [
        (line_ids.get(line.permit_line_id), line.quantity, line.unit) for line in endorsement.lines
    ]


def _endorsed_records(
    row: Permit,
    boxes: PermitBoxes,
    endorsement: Endorsement,
    *,
    direction: str,
    basis: str,
    status: str,
) -> list[TradeRecord]:
    """One record per line the endorsement recorded (a line it leaves out did not cross)."""
    return _records(
        row,
        boxes,
        _endorsed_quantities(row, endorsement),
        direction=direction,
        basis=basis,
        endorsement=endorsement,
        year=endorsement.endorsed_on.year,
        status=status,
    )


# A permit in the report: its row, its verified boxes, its endorsements by side, and the
# Party's import endorsement of it in the year (None if there is none).
_Readable = tuple[Permit, PermitBoxes, dict[Side, Endorsement], Endorsement | None]


def annual_report(
    session: Session, party: str, year: int, *, now: datetime | None = None
) -> AnnualReport:
    """The trade records and permit counts of ``party`` for ``year`` (see the module's text).

    Reads every permit the Party issued that reached the node since the year began (a permit is
    submitted after it is issued) and every permit endorsed in the year; those the Party issued
    or imported in the year are verified against the registry as it stood when the node
    received them, the others (other Parties' trade) are left alone, unreadable or not.
    """
    now = now or datetime.now(UTC)
    check_year(year, now.date())
    party = party.upper()
    endorsed_in_year = select(Endorsement.permit_id).where(
        Endorsement.endorsed_on >= date(year, 1, 1), Endorsement.endorsed_on < date(year + 1, 1, 1)
    )
    # Box 13 may carry a zone up to 14 hours ahead of UTC: a day's margin.
    since = datetime(year, 1, 1, tzinfo=UTC) - timedelta(days=1)
    rows = {
        row.id: row
        for row in session.scalars(
            select(Permit).where(
                or_(
                    and_(Permit.issuing_party == party, Permit.created_at >= since),
                    Permit.id.in_(endorsed_in_year),
                )
            )
        )
    }
    by_permit = _endorsements_by_permit(session, rows)

    unreadable: list[str] = []
    readable: list[_Readable] = []
    for row in sorted(rows.values(), key=lambda row: row.id):
        sides = by_permit.get(row.id, {})
        imported = sides.get(Side.IMPORT)
        if not (
            imported is not None
            and imported.endorsing_party == party
            and imported.endorsed_on.year == year
        ):
            imported = None  # not this Party's import in the year
        if row.issuing_party != party and imported is None:
            continue  # endorsed in the year, but between other Parties: none of this report
        _, _, boxes = verified_permit(session, row)
        if boxes is None:
            unreadable.append(f"{row.issuing_party} {row.number}")
            continue
        readable.append((row, boxes, sides, imported))

    on_export_documents = _imported_on_export_documents(
        [*readable, *_imported_in_other_years(session, party, year, readable)]
    )
    granted: Counter[str] = Counter()
    withdrawn: Counter[str] = Counter()
    records: list[TradeRecord] = []
    for row, boxes, sides, imported in readable:
        status = effective_status(row, now)
        if row.issuing_party == party:
            issued_in_year = _issue_year(row, boxes) == year
            if issued_in_year:
                granted[row.document_type] += 1
                if row.status in WITHDRAWN:
                    withdrawn[row.status] += 1
            if row.document_type in EXPORT_DOCUMENTS:
                records += _export_records(row, boxes, sides, year, issued_in_year, status)
        if imported is not None:
            records += [
                record
                for record in _endorsed_records(
                    row, boxes, imported, direction="import", basis=IMPORT_ENDORSED, status=status
                )
                if row.document_type != "I"
                or (printed_number(row.number), taxon_key(record.taxon or ""))
                not in on_export_documents
            ]
    return AnnualReport(
        party=party,
        year=year,
        generated_at=now,
        permits_granted=dict(sorted(granted.items())),
        permits_withdrawn=dict(sorted(withdrawn.items())),
        records=tuple(records),
        quota_use=tuple(quota_use(records, party)),
        unreadable=tuple(unreadable),
    )


def _imported_on_export_documents(
    readable: Iterable[_Readable],
) -> set[tuple[str, str]]:
    """(import permit number, taxon) of each line the Party's customs endorsed on import on an
    export document that names its import permit (UN/EDIFACT 911, Appendix I); the number in
    its printed form (``printed_number``), as the export document may write it otherwise.

    Both documents of such a shipment may be endorsed on arrival. The import record rests on
    the export document, as the annual-report guidelines have importers report it; the import
    permit's own endorsement of the same taxon would count the shipment a second time.
    """
    found: set[tuple[str, str]] = set()
    for row, boxes, _, imported in readable:
        if imported is None or row.document_type not in EXPORT_DOCUMENTS:
            continue
        for_document = [
            ref.id for ref in boxes.references if ref.type_code == DOC_IMPORT_PERMIT and ref.id
        ]
        crossed = {line_id for line_id, _, _ in _endorsed_quantities(row, imported)}
        for line in boxes.lines:
            if line.line_id not in crossed:
                continue
            on_line = line.import_permit.id if line.import_permit else None
            numbers = [on_line] if on_line else for_document
            taxon = taxon_key(line.scientific_name or "")
            found.update((printed_number(number), taxon) for number in numbers)
    return found


def _imported_in_other_years(
    session: Session, party: str, year: int, readable: Iterable[_Readable]
) -> list[_Readable]:
    """The export documents the Party's customs endorsed on import in another year, while an
    import permit it imported in ``year`` was valid (its box 2, else that endorsement's day).

    The two documents of one Appendix I shipment may be endorsed either side of New Year (the
    export permit on 31 December, the import permit on 2 January). The shipment is imported in
    the year of its export document's endorsement, whose record it rests on; the import
    permit's endorsement, in the other year, must add no record of the taxa that document
    carried. Only such documents are read: those of other years are otherwise no part of the
    report. One that no longer verifies is left out, as it names nothing EPIX can read.
    """
    spans = [
        (
            (row.valid_from.date() if row.valid_from else imported.endorsed_on),
            (row.valid_until.date() if row.valid_until else imported.endorsed_on),
        )
        for row, _, _, imported in readable
        if imported is not None and row.document_type == "I"
    ]
    if not spans:
        return []
    slack = timedelta(days=1)  # the endorsement's local date may differ from UTC's by a day
    # Never past the calendar's ends: an import permit may be valid to 31 December 9999.
    earliest = max(min(start for start, _ in spans), date.min + slack) - slack
    latest = min(max(end for _, end in spans), date.max - slack) + slack
    rows = {
        row.id: row
        for row in session.scalars(
            select(Permit)
            .join(Endorsement, Endorsement.permit_id == Permit.id)
            .where(
                Endorsement.side == Side.IMPORT.value,
                Endorsement.endorsing_party == party,
                Permit.document_type.in_(EXPORT_DOCUMENTS),
                Endorsement.endorsed_on >= earliest,
                Endorsement.endorsed_on <= latest,
                or_(
                    Endorsement.endorsed_on < date(year, 1, 1),
                    Endorsement.endorsed_on >= date(year + 1, 1, 1),
                ),
            )
        )
    }
    found: list[_Readable] = []
    for permit_id, sides in _endorsements_by_permit(session, rows).items():
        row = rows[permit_id]
        _, _, boxes = verified_permit(session, row)
        if boxes is not None:
            found.append((row, boxes, sides, sides[Side.IMPORT]))
    return found


def _endorsements_by_permit(
    session: Session, rows: dict[int, Permit]
) -> dict[int, dict[Side, Endorsement]]:
    """Every endorsement of the permits in ``rows``, whatever its year, by permit and side."""
    found: dict[int, dict[Side, Endorsement]] = {}
    ids = list(rows)
    for start in range(0, len(ids), 500):  # bounded IN lists
        chunk = ids[start : start + 500]
        for endorsement in session.scalars(
            select(Endorsement).where(Endorsement.permit_id.in_(chunk))
        ):
            found.setdefault(endorsement.permit_id, {})[Side(endorsement.side)] = endorsement
    return found


def _export_records(
    row: Permit,
    boxes: PermitBoxes,
    sides: dict[Side, Endorsement],
    year: int,
    issued_in_year: bool,
    status: str,
) -> list[TradeRecord]:
    """The exporting Party's records of one permit in ``year``, if the year is its year: as
    endorsed at export, else at import, else as issued."""
    direction = EXPORT_DOCUMENTS[row.document_type]
    for side, basis in ((Side.EXPORT, EXPORT_ENDORSED), (Side.IMPORT, IMPORT_ENDORSED)):
        endorsement = sides.get(side)
        if endorsement is not None:
            if endorsement.endorsed_on.year != year:
                return []
            return _endorsed_records(
                row, boxes, endorsement, direction=direction, basis=basis, status=status
            )
    if not issued_in_year or row.status in WITHDRAWN:
        return []
    allowed = ((line.line_id, line.permitted_quantity, line.unit) for line in row.lines)
    return _records(
        row,
        boxes,
        allowed,
        direction=direction,
        basis=PERMIT_ISSUED,
        endorsement=None,
        year=year,
        status=status,
    )


def read_annual_report(
    database: Database,
    party: str,
    year: int,
    *,
    reader: Principal | None,
    request: RequestContext,
    output: str,
) -> AnnualReport:
    """``annual_report`` for ``reader`` (None: the node's operator at the command line), audited
    whatever the outcome: the report shows every permit of the Party in the year.

    The report is read from a snapshot (``Database.read``): it verifies every permit again and
    may take seconds, which a write transaction would spend holding SQLite's write lock. Its
    audit event is then written in a transaction of its own; a refusal is audited, then raised.
    """
    party = party.upper()
    try:
        if reader is not None and not may_see_party(reader, party):
            raise EpixError.of(
                "EPIX-AUTH-005",
                f"You act for {reader.party}; only {party}'s Management Authority and the "
                "Secretariat may read its annual report.",
                "party",
            )
        with database.read() as session:
            report = annual_report(session, party, year)
    except EpixError as refusal:
        _audit(database, party, year, reader, request, output, refusal.findings[0].code, 0)
        raise
    _audit(database, party, year, reader, request, output, "ok", len(report.records))
    return report


def _audit(
    database: Database,
    party: str,
    year: int,
    reader: Principal | None,
    request: RequestContext,
    output: str,
    outcome: str,
    records: int,
) -> None:
    with database.unit_of_work() as session:
        record_event(
            session,
            action=ACTION_ANNUAL_REPORT,
            outcome=outcome,
            actor=reader,
            party=party,
            request=request,
            detail={"year": year, "format": output, "records": records},
        )
