"""Retention: purge only records whose earliest purge date has passed, keeping the chain whole.

A purge removes a prefix of the chain (events 1..S, every one of them due), after signing a
checkpoint at S, and records a purge event signed with the node key; verification then starts
from S + 1, anchored by that checkpoint and that signed purge. A due event
behind a younger one waits until the younger one is due too: nothing younger is ever removed.

A large purge runs as a series of such purges of at most ``PURGE_BATCH_EVENTS`` events each,
one transaction apiece: each holds the chain head's lock, which every audited request needs,
only while it deletes its batch, and each leaves a chain that verifies on its own, so audited
requests go on between batches and a purge stopped half-way (killed, a lost database) leaves
a verifiable trail, with the rest still due for the next purge. Tamper evidence is the same
as for one purge: every cut is at a node-signed checkpoint and named by a node-signed purge
event, and verification checks the latest of these against the first surviving event.
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
from epix.db import Database
from epix.db.base import utcnow
from epix.errors import EpixError

# Events one purge transaction deletes. Measured purging two million events (loopback, 2 shared
# cores): in one transaction the chain lock was held 1.6 s on PostgreSQL 15 and 4.9 s on SQLite
# (more with wider rows and slower disks); in batches of 10,000 each batch held it 12-24 ms
# (median; at most 0.7 s) on PostgreSQL, 33 ms (at most 0.3 s) on SQLite, the whole purge taking
# 11-18 s and 8 s. Each batch adds one purge event to the chain (100 for a million events).
PURGE_BATCH_EVENTS = 10_000


@dataclass(frozen=True, slots=True)
class PurgePlan:
    """The chain's prefix through ``through_sequence``, and how many of its events are due (a
    plan) or were removed (a purge, a batch); ``count`` 0: none."""

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
    database: Database,
    *,
    before: date,
    signer: CheckpointSigner,
    dry_run: bool = False,
    batch_events: int = PURGE_BATCH_EVENTS,
) -> PurgePlan:
    """Remove the due prefix of the log in batches of ``batch_events``, each anchored by a
    signed checkpoint and recorded by a signed purge event in a transaction of its own; returns
    what was due (``dry_run``) or what was removed."""
    with database.read() as session:
        plan = plan_purge(session, before=before)
    if dry_run or plan.count == 0:
        return plan
    removed, after = 0, 0
    while True:
        with database.unit_of_work() as session:
            batch = purge_batch(
                session,
                after=after,
                through=plan.through_sequence,
                before=before,
                signer=signer,
                limit=batch_events,
            )
        if batch.count == 0:
            return PurgePlan(through_sequence=plan.through_sequence, count=removed)
        removed, after = removed + batch.count, batch.through_sequence


def purge_batch(
    session: Session,
    *,
    through: int,
    before: date,
    signer: CheckpointSigner,
    limit: int,
    after: int = 0,
) -> PurgePlan:
    """Purge the oldest surviving events up to ``through`` (all due by ``before``), at most
    ``limit`` of them, as one complete purge in the caller's transaction; returns what it
    removed.

    The first surviving event is read under the chain lock, so two purges running at once
    each remove what the other has not, and every batch starts where the chain starts.
    ``after``, the last event an earlier batch removed (no event up to it survives: sequences
    only grow), is where the index scans start: PostgreSQL keeps the deleted rows' index
    entries until VACUUM, and scanning them from the start made each of 200 batches of a
    two-million-event purge slower than the one before."""
    lock_chain_head(session)
    oldest = (
        select(AuditEvent.sequence)
        .where(AuditEvent.sequence > after, AuditEvent.sequence <= through)
        .order_by(AuditEvent.sequence)
        .limit(limit)
        .subquery()
    )
    row = session.execute(
        select(func.max(oldest.c.sequence), func.count()).select_from(oldest)
    ).one()
    last_sequence, count = row[0], int(row[1])
    if not count:
        return PurgePlan(through_sequence=after, count=0)
    last = session.get(AuditEvent, last_sequence)
    assert last is not None
    checkpoint_at(session, last.sequence, last.hash, signer)
    session.execute(
        delete(AuditEvent).where(AuditEvent.sequence > after, AuditEvent.sequence <= last.sequence)
    )
    signed = purge_statement(last.sequence, last.hash, before.isoformat())
    record_event(
        session,
        action=PURGE_ACTION,
        outcome="ok",
        detail={
            "through_sequence": last.sequence,
            "count": count,
            "before": before.isoformat(),
            # Only the node key can say a prefix was purged: a forger with the database alone
            # could otherwise cut the chain at any signed checkpoint and append a purge event.
            "signature": sign_statement(signer, signed),
            "certificate_pem": signer.cert_pem.decode("ascii"),
        },
    )
    return PurgePlan(through_sequence=last.sequence, count=count)
