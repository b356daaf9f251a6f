"""Verify the audit chain and name the first broken event (guarantee 8: tamper-evident log)."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from epix.audit.models import AuditChainHead, AuditCheckpoint, AuditEvent
from epix.audit.service import GENESIS_HASH, HEAD_ROW_ID, PURGE_ACTION, compute_hash
from epix.audit.signing import (
    certificate_fingerprint,
    purge_statement,
    signature_valid,
    statement_signature_valid,
    trusted,
)
from epix.errors import Finding

BATCH = 1000


@dataclass(slots=True)
class ChainReport:
    """What verification found; ``broken_at`` is the first event that fails, if any."""

    events_checked: int = 0
    first_sequence: int | None = None
    last_sequence: int | None = None
    checkpoints_verified: int = 0
    checkpoints_pending: int = 0
    broken_at: int | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def _break(self, sequence: int, message: str) -> None:
        self.broken_at = sequence
        self.findings.append(
            Finding("EPIX-AUDIT-001", message, f"audit_events[sequence={sequence}]")
        )

    def malformed(self, message: str) -> None:
        """An export that cannot be checked at all: not EPIX's, unsigned, or cut short."""
        self.findings.append(Finding("EPIX-AUDIT-003", message, "export"))

    def _bad_checkpoint(self, sequence: int, message: str) -> None:
        self.findings.append(
            Finding("EPIX-AUDIT-002", message, f"audit_checkpoints[sequence={sequence}]")
        )


def _events(session: Session) -> Iterator[AuditEvent]:
    """Every event in sequence order, fetched in batches (the log can be large)."""
    after = -1
    while True:
        batch = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.sequence > after)
            .order_by(AuditEvent.sequence)
            .limit(BATCH)
        ).all()
        if not batch:
            return
        yield from batch
        after = batch[-1].sequence


def _signed_purge_through(
    session: Session, anchor_hash: str, trusted_fingerprints: Sequence[str] | None
) -> int | None:
    """The last event the latest recorded purge removed, if the node key signed that purge.

    A purge records its event after deleting, so the latest one always survives; its hash is
    checked with the rest of the chain. Its signature covers the prefix, the anchor's hash and
    the due date: without it, anyone able to write the database could cut the chain at a
    signed checkpoint and append a purge event of their own.
    """
    raw = session.scalar(
        select(AuditEvent.detail)
        .where(AuditEvent.action == PURGE_ACTION)
        .order_by(AuditEvent.sequence.desc())
        .limit(1)
    )
    try:
        detail = json.loads(raw) if raw is not None else None
    except ValueError:
        return None
    if not isinstance(detail, dict):
        return None
    through, before = detail.get("through_sequence"), detail.get("before")
    signature, cert_pem = detail.get("signature"), detail.get("certificate_pem")
    if not (
        isinstance(through, int)
        and isinstance(before, str)
        and before.isascii()
        and isinstance(signature, str)
        and isinstance(cert_pem, str)
        and statement_signature_valid(
            cert_pem, signature, purge_statement(through, anchor_hash, before)
        )
    ):
        return None
    if trusted_fingerprints is not None and (
        certificate_fingerprint(cert_pem) not in trusted_fingerprints
    ):
        return None
    return through


def verify_chain(
    session: Session,
    *,
    trusted_fingerprints: Sequence[str] | None = None,
    checkpoint_every: int = 0,
) -> ChainReport:
    """Recompute every hash and link; check the head and the signed checkpoints.

    ``trusted_fingerprints`` are the SHA-256 fingerprints of the node certificates allowed to
    sign checkpoints; without them a checkpoint only has to verify with its own certificate.
    ``checkpoint_every`` (the node's EPIX_AUDIT_CHECKPOINT_EVERY, 0: not checked) requires a
    trusted checkpoint at or after the last multiple of it: the hash is unkeyed, so a trail
    whose checkpoints were deleted could otherwise be rewritten from its first event.
    """
    report = ChainReport()
    checkpoints = {
        checkpoint.sequence: checkpoint
        for checkpoint in session.scalars(select(AuditCheckpoint)).all()
    }
    head = session.get(AuditChainHead, HEAD_ROW_ID)
    head_sequence, head_hash = (head.sequence, head.hash) if head else (0, GENESIS_HASH)
    expected_sequence: int | None = None
    expected_prev = GENESIS_HASH
    for event in _events(session):
        if expected_sequence is None:
            report.first_sequence = event.sequence
            expected_sequence = event.sequence
            if event.sequence != 1:
                anchor = checkpoints.get(event.sequence - 1)
                if anchor is None or not trusted(anchor, trusted_fingerprints):
                    report._break(
                        event.sequence,
                        f"Events before {event.sequence} are missing and no trusted signed "
                        "checkpoint anchors the chain there.",
                    )
                    return report
                purged_through = _signed_purge_through(
                    session, anchor.head_hash, trusted_fingerprints
                )
                if purged_through != event.sequence - 1:
                    # Checkpoints are signed every N events; only a signed purge may cut there.
                    report._break(
                        event.sequence,
                        f"Events before {event.sequence} are missing and no recorded purge "
                        "signed by the node removed them.",
                    )
                    return report
                expected_prev = anchor.head_hash
        if event.sequence != expected_sequence:
            report._break(
                expected_sequence,
                f"Event {expected_sequence} is missing (the next event is {event.sequence}).",
            )
            return report
        if compute_hash(event) != event.hash:
            report._break(event.sequence, f"Event {event.sequence} was altered or moved.")
            return report
        if event.prev_hash != expected_prev:
            report._break(
                event.sequence,
                f"Event {event.sequence} does not follow event {event.sequence - 1}.",
            )
            return report
        checkpoint = checkpoints.get(event.sequence)
        if checkpoint is not None and checkpoint.head_hash != event.hash:
            report._break(
                event.sequence,
                f"Event {event.sequence} differs from the checkpoint taken at it.",
            )
            return report
        report.events_checked += 1
        report.last_sequence = event.sequence
        expected_prev = event.hash
        expected_sequence += 1
    last = report.last_sequence
    if last is None:
        # Nothing left (empty, or everything purged): the head must be anchored by a checkpoint.
        anchor = checkpoints.get(head_sequence)
        if head_sequence != 0 and (
            anchor is None
            or anchor.head_hash != head_hash
            or not trusted(anchor, trusted_fingerprints)
        ):
            report._break(head_sequence, f"Events up to {head_sequence} are missing.")
            return report
    elif head_sequence != last or head_hash != expected_prev:
        if head_sequence > last:
            report._break(last + 1, f"Events {last + 1}..{head_sequence} are missing.")
        else:
            report._break(last, f"The chain head does not name event {last}.")
        return report
    _check_checkpoints(report, checkpoints.values(), head_sequence, trusted_fingerprints)
    if report.ok and checkpoint_every > 0:
        _check_checkpoint_due(
            report, checkpoints, head_sequence, checkpoint_every, trusted_fingerprints
        )
    return report


def _check_checkpoint_due(
    report: ChainReport,
    checkpoints: dict[int, AuditCheckpoint],
    head_sequence: int,
    every: int,
    trusted_fingerprints: Sequence[str] | None,
) -> None:
    """A trusted checkpoint at or after the last multiple of ``every`` (the newest one pins
    every event before it; only the events after it are open to an undetected rewrite)."""
    due = head_sequence - head_sequence % every
    if due == 0 or any(
        sequence >= due and trusted(checkpoint, trusted_fingerprints)
        for sequence, checkpoint in checkpoints.items()
    ):
        return
    report._bad_checkpoint(
        due,
        f"No checkpoint signed by the node covers event {due}, though one is signed every "
        f"{every} events: checkpoints deleted would hide a rewritten trail. If the node ran "
        "without its key, `epix audit checkpoint` signs one at the head.",
    )


def _check_checkpoints(
    report: ChainReport,
    checkpoints: Collection[AuditCheckpoint],
    head_sequence: int,
    trusted_fingerprints: Sequence[str] | None,
) -> None:
    """Every checkpoint must name a surviving head position and carry the node's signature."""
    for checkpoint in sorted(checkpoints, key=lambda c: c.sequence):
        if checkpoint.sequence > head_sequence:
            report._break(
                checkpoint.sequence,
                f"A checkpoint names event {checkpoint.sequence}, which is missing.",
            )
            return
        if checkpoint.signature is None:
            report.checkpoints_pending += 1
        elif not signature_valid(checkpoint):
            report._bad_checkpoint(
                checkpoint.sequence,
                f"The signature of checkpoint {checkpoint.sequence} does not verify.",
            )
        elif not trusted(checkpoint, trusted_fingerprints):
            report._bad_checkpoint(
                checkpoint.sequence,
                f"Checkpoint {checkpoint.sequence} is signed by a key that is not the node's.",
            )
        else:
            report.checkpoints_verified += 1
