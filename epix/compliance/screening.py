"""Screen a permit against published quotas, reservations and its own box 11a: warnings only."""

from __future__ import annotations

from datetime import UTC, date, datetime

from epix.compliance.quotas import Quota, quota_index
from epix.errors import Finding
from epix.permits import locations as loc
from epix.permits.model import Permit, PermitLine
from epix.permits.reservations import has_reservation

# Units that count specimens: a quota without a unit is a number of specimens.
COUNT_UNITS = frozenset({"NAR", "PCS"})


def _at(permit: Permit) -> date:
    moment = permit.issued_at or permit.valid_from or datetime.now(UTC)
    return moment.date()


def _quota_findings(index: int, line: PermitLine, quota: Quota, exporter: str) -> list[Finding]:
    where = loc.line(index, loc.QUANTITY)
    label = f"Line {line.line_id}: {line.scientific_name} from {exporter}"
    if quota.quota == 0:
        return [
            Finding(
                "EPIX-COMP-002",
                f"{label}: a zero export quota applies ({quota.kind}). {quota.notes}".strip(),
                where,
            )
        ]
    comparable = quota.unit == line.unit or (quota.unit is None and line.unit in COUNT_UNITS)
    if line.quantity is None or not comparable:
        return []
    used = line.quota_used or 0
    if used + line.quantity > quota.quota:
        return [
            Finding(
                "EPIX-COMP-001",
                f"{label}: {used} already used plus {line.quantity} exceeds the published "
                f"export quota of {quota.quota} ({quota.kind}).",
                where,
            )
        ]
    return []


def _box_11a(index: int, line: PermitLine) -> list[Finding]:
    where = loc.line(index, loc.QUOTA)
    used, annual = line.quota_used, line.annual_quota
    if used is None and annual is None:
        return []
    if used is None or annual is None:
        return [
            Finding(
                "EPIX-COMP-004",
                f"Line {line.line_id}: box 11a gives "
                f"{'the annual quota' if annual is not None else 'the quota used'} without "
                f"{'the quota used' if annual is not None else 'the annual quota'}.",
                where,
            )
        ]
    if used < 0 or annual < 0 or used > annual:
        return [
            Finding(
                "EPIX-COMP-004",
                f"Line {line.line_id}: box 11a says {used} of an annual quota of {annual} used.",
                where,
            )
        ]
    if line.quantity is not None and used + line.quantity > annual:
        return [
            Finding(
                "EPIX-COMP-001",
                f"Line {line.line_id}: {used} used plus {line.quantity} on this permit exceeds "
                f"the annual quota of {annual} stated in box 11a.",
                where,
            )
        ]
    return []


def screen_permit(permit: Permit) -> list[Finding]:
    """Compliance warnings for the permit (EPIX-COMP-*); never an error."""
    findings: list[Finding] = []
    at = _at(permit)
    exporter = permit.exporter.country
    exporting = permit.document_type == "E"
    for index, line in enumerate(permit.lines, start=1):
        findings += _box_11a(index, line)
        if exporter is None or line.scientific_name is None:
            continue
        if exporting:
            for quota in quota_index().covering(
                exporter=exporter,
                taxon=line.scientific_name,
                term=line.term,
                source=line.source,
                purpose=permit.purpose,
                at=at,
            ):
                findings += _quota_findings(index, line, quota, exporter)
        if has_reservation(exporter, line.scientific_name, at):
            findings.append(
                Finding(
                    "EPIX-COMP-003",
                    f"Line {line.line_id}: {exporter} holds a reservation for "
                    f"{line.scientific_name}; it trades this taxon as a non-Party.",
                    loc.line(index, loc.SCIENTIFIC_NAME),
                )
            )
    return findings
