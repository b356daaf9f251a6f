"""Checkpoint rows: written every N events, signed on demand, and as anchors before a purge.

A checkpoint proves that the log was not rewritten after it was signed, and anchors the chain
when a purge has removed the events before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from epix.audit.context import RequestContext
from epix.audit.models import AuditChainHead, AuditCheckpoint, AuditEvent
from epix.audit.service import HEAD_ROW_ID, lock_chain_head, record_event
from epix.audit.signing import CheckpointSigner, sign_checkpoint
from epix.auth.principal import Principal
from epix.db.base import utcnow
from epix.errors import EpixError


def sign_pending_checkpoints(session: Session, signer: CheckpointSigner) -> int:
    """Sign the checkpoints ``record_event`` left unsigned; returns how many were signed.

    Each only when it names its event's stored hash (EPIX-AUDIT-001 otherwise): the node key
    must never vouch for a row someone planted naming the head of a rewritten trail. One
    whose event a purge has since removed stays unsigned: nothing is left to compare it with.
    """
    pending = session.scalars(
        select(AuditCheckpoint)
        .where(AuditCheckpoint.signature.is_(None))
        .order_by(AuditCheckpoint.sequence)
    ).all()
    hashes = dict(
        session.execute(
            select(AuditEvent.sequence, AuditEvent.hash).where(
                AuditEvent.sequence.in_([checkpoint.sequence for checkpoint in pending])
            )
        ).all()
    )
    signed = 0
    for checkpoint in pending:
        event_hash = hashes.get(checkpoint.sequence)
        if event_hash is None:
            continue
        _require_event_hash(checkpoint, event_hash)
        sign_checkpoint(checkpoint, signer)
        signed += 1
    return signed


def checkpoint_at(
    session: Session, sequence: int, event_hash: str, signer: CheckpointSigner
) -> AuditCheckpoint:
    """A signed checkpoint at one event (reusing a pending or signed one already there, only
    when it names ``event_hash``)."""
    checkpoint = session.get(AuditCheckpoint, sequence)
    if checkpoint is None:
        checkpoint = AuditCheckpoint(sequence=sequence, head_hash=event_hash, created_at=utcnow())
        session.add(checkpoint)
    _require_event_hash(checkpoint, event_hash)
    if checkpoint.signature is None:
        sign_checkpoint(checkpoint, signer)
    session.flush()
    return checkpoint


def _require_event_hash(checkpoint: AuditCheckpoint, event_hash: str) -> None:
    """Refuse (EPIX-AUDIT-001) a checkpoint row that names another hash than its event's."""
    if checkpoint.head_hash != event_hash:
        raise EpixError.of(
            "EPIX-AUDIT-001",
            f"The checkpoint row at event {checkpoint.sequence} names the head "
            f"{checkpoint.head_hash[:16]}…, but event {checkpoint.sequence} has the hash "
            f"{event_hash[:16]}…: the trail or its checkpoints were altered, and nothing was "
            "signed. Run `epix audit verify`.",
            f"audit_checkpoints[sequence={checkpoint.sequence}]",
        )


def create_checkpoint(
    session: Session,
    signer: CheckpointSigner,
    *,
    actor: Principal | None = None,
    request: RequestContext | None = None,
) -> AuditCheckpoint:
    """Sign a checkpoint at the current head now, and record that it was made (and by whom)."""
    head = lock_chain_head(session)
    if head.sequence == 0:
        raise EpixError.of(
            "EPIX-REQ-004", "The audit trail is empty: nothing to checkpoint.", "audit_events"
        )
    checkpoint = checkpoint_at(session, head.sequence, head.hash, signer)
    record_event(
        session,
        action="audit_checkpoint",
        outcome="ok",
        actor=actor,
        request=request,
        detail={"sequence": checkpoint.sequence, "head_hash": checkpoint.head_hash},
    )
    return checkpoint


@dataclass(frozen=True, slots=True)
class CheckpointLag:
    """How far the chain's head is past its last signed checkpoint (None: none signed yet)."""

    head_sequence: int
    signed_sequence: int | None
    signed_at: datetime | None


def checkpoint_lag(session: Session) -> CheckpointLag:
    """For monitoring: two primary-key reads, never a count of the events.

    The last signed checkpoint is found walking checkpoints back from the newest (one per
    ``EPIX_AUDIT_CHECKPOINT_EVERY`` events), stopping at the first signed one.
    """
    head = session.scalar(select(AuditChainHead.sequence).where(AuditChainHead.id == HEAD_ROW_ID))
    signed = session.execute(
        select(AuditCheckpoint.sequence, AuditCheckpoint.signed_at)
        .where(AuditCheckpoint.signature.is_not(None))
        .order_by(AuditCheckpoint.sequence.desc())
        .limit(1)
    ).first()
    return CheckpointLag(
        head_sequence=int(head or 0),
        signed_sequence=signed.sequence if signed else None,
        signed_at=signed.signed_at if signed else None,
    )
