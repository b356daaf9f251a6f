"""Retention: purge only records whose earliest purge date has passed, keeping the chain whole.

A purge removes a prefix of the chain (events 1..S, every one of them due), after signing a
checkpoint at S, and records a purge event signed with the node key; verification then starts
from S + 1, anchored by that checkpoint and that signed purge. A due event
behind a younger one waits until the younger one is due too: nothing younger is ever removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from epix.audit.checkpoints import checkpoint_at
from epix.audit.models import AuditEvent
from epix.audit.service import PURGE_ACTION, lock_chain_head, record_event
from epix.audit.signing import CheckpointSigner, purge_statement, sign_statement
from epix.db.base import utcnow
from epix.db.engine import without_statement_timeout
from epix.errors import EpixError


@dataclass(frozen=True, slots=True)
class PurgePlan:
    """Events 1..``through_sequence`` (``count`` of them) may go; 0 means nothing is due."""

    through_sequence: int
    count: int


def plan_purge(session: Session, *, before: date) -> PurgePlan:
    """Which prefix of the chain is due by ``before`` (no later than today)."""
    if before > utcnow().date():
        raise EpixError.of(
            "EPIX-REQ-004",
            "The purge date cannot be in the future: records would go before they are due.",
            "before",
        )
    first_young = session.scalar(
        select(func.min(AuditEvent.sequence)).where(AuditEvent.purge_after > before)
    )
    through_query = select(func.max(AuditEvent.sequence))
    count_query = select(func.count()).select_from(AuditEvent)
    if first_young is not None:
        through_query = through_query.where(AuditEvent.sequence < first_young)
        count_query = count_query.where(AuditEvent.sequence < first_young)
    through = session.scalar(through_query)
    return PurgePlan(through_sequence=through or 0, count=session.scalar(count_query) or 0)


def purge(
    session: Session, *, before: date, signer: CheckpointSigner, dry_run: bool = False
) -> PurgePlan:
    """Remove the due prefix of the log, anchored by a signed checkpoint, and record it."""
    lock_chain_head(session)
    plan = plan_purge(session, before=before)
    if dry_run or plan.count == 0:
        return plan
    last = session.get(AuditEvent, plan.through_sequence)
    assert last is not None
    checkpoint_at(session, last.sequence, last.hash, signer)
    # A year's events may be millions of rows: more than the node's statement timeout allows.
    without_statement_timeout(session.connection())
    session.execute(delete(AuditEvent).where(AuditEvent.sequence <= plan.through_sequence))
    signed = purge_statement(plan.through_sequence, last.hash, before.isoformat())
    record_event(
        session,
        action=PURGE_ACTION,
        outcome="ok",
        detail={
            "through_sequence": plan.through_sequence,
            "count": plan.count,
            "before": before.isoformat(),
            # Only the node key can say a prefix was purged: a forger with the database alone
            # could otherwise cut the chain at any signed checkpoint and append a purge event.
            "signature": sign_statement(signer, signed),
            "certificate_pem": signer.cert_pem.decode("ascii"),
        },
    )
    return plan
