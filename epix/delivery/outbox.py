"""The outbox: enqueue in the caller's transaction; claim with leases; finish under a fence.

Every function takes a ``Session`` and never commits. The worker owns the transactions:
one to claim, none while talking to a peer, one to record the outcome. The outcome is written
only if the row still carries the claimer's owner id and fencing version, so a worker that
froze past its lease cannot overwrite the work of the worker that re-claimed the row
(EPIX-DLV-005).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from epix.db.base import utcnow
from epix.delivery.models import OutboxKind, OutboxMessage, OutboxOutcome, OutboxState, OutboxTotal
from epix.errors import EpixError

DEFAULT_GIVE_UP_SECONDS = 72 * 3600

# The code of a row the importing Party's node refused because it does not hold the permit yet
# (EPIX-MSG-011): it stays pending and is sent again once the permit may be there.
WAITING_FOR_PERMIT = "EPIX-DLV-014"


def peer_key_for(destination_party: str, target_url: str | None) -> str:
    """What a peer's circuit breaker is keyed on: the webhook host, or the destination Party."""
    if target_url:
        parts = urlsplit(target_url)
        return f"url:{parts.scheme}://{parts.netloc}".lower()
    return f"party:{destination_party}"


def permit_order_key(issuing_party: str, number: str) -> str:
    """The order key of every message about one permit (the permit itself, its endorsements,
    its cancellation or replacement): to one Party they go out in the order they were queued."""
    return f"permit:{issuing_party}:{number}"


def enqueue(
    session: Session,
    *,
    kind: OutboxKind | str,
    destination_party: str,
    payload: bytes,
    message_id: str,
    content_type: str = "application/xml",
    headers: Mapping[str, str] | None = None,
    target_url: str | None = None,
    sender_party: str | None = None,
    subscription_id: int | None = None,
    give_up_seconds: int = DEFAULT_GIVE_UP_SECONDS,
    order_key: str | None = None,
    now: datetime | None = None,
) -> OutboxMessage:
    """Add one message to the outbox, inside the caller's transaction.

    A row with an ``order_key`` is not claimed while an earlier row with the same key to the
    same destination is still pending (being delivered or waiting for a retry), so a
    cancellation never overtakes the permit it cancels.

    ``headers`` are sent as they are (for peer messages the X-EPIX-* envelope headers);
    X-EPIX-Message-Id, X-EPIX-To and, if ``sender_party`` is given, X-EPIX-From are filled in
    when absent. Enqueueing the same kind, destination, message id (and subscription) again
    returns the existing row, so a retried caller never sends twice.
    """
    kind = OutboxKind.of(kind)
    if kind is OutboxKind.WEBHOOK and (target_url is None or subscription_id is None):
        raise ValueError("a webhook row needs its subscription and target URL")
    all_headers = {"X-EPIX-Message-Id": message_id, "X-EPIX-To": destination_party}
    if sender_party:
        all_headers["X-EPIX-From"] = sender_party
    all_headers.update(headers or {})
    sender = sender_party or all_headers.get("X-EPIX-From", "")
    dedupe_key = f"{kind.value}:{destination_party}:{subscription_id or ''}:{message_id}"
    existing = session.scalar(select(OutboxMessage).where(OutboxMessage.dedupe_key == dedupe_key))
    if existing is not None:
        return existing
    created = now or utcnow()
    row = OutboxMessage(
        dedupe_key=dedupe_key,
        kind=kind.value,
        message_id=message_id,
        sender_party=sender,
        destination_party=destination_party,
        target_url=target_url,
        subscription_id=subscription_id,
        peer_key=peer_key_for(destination_party, target_url),
        order_key=order_key,
        content_type=content_type,
        headers=all_headers,
        payload=payload,
        state=OutboxState.PENDING.value,
        attempts=0,
        created_at=created,
        next_attempt_at=created,
        give_up_at=created + timedelta(seconds=give_up_seconds),
        lease_version=0,
        resent_count=0,
    )
    session.add(row)
    session.flush()
    return row


@dataclass(frozen=True, slots=True)
class Claim:
    """A leased row as the worker saw it when claiming: everything needed to deliver it."""

    id: int
    owner: str
    version: int
    kind: str
    message_id: str
    sender_party: str
    destination_party: str
    target_url: str | None
    subscription_id: int | None
    peer_key: str
    order_key: str | None
    content_type: str
    headers: dict[str, Any]
    payload: bytes
    attempts: int
    give_up_at: datetime
    permit_wait_until: datetime | None
    claimed_at: datetime
    lease_expires_at: datetime


def claim_due(
    session: Session,
    *,
    owner: str,
    lease_seconds: float,
    limit: int,
    now: datetime | None = None,
    skip_peers: Collection[str] = (),
) -> list[Claim]:
    """Lease up to ``limit`` due rows to ``owner``; each claim counts as an attempt.

    On PostgreSQL the rows are locked with SKIP LOCKED so concurrent claimers take disjoint
    rows; on SQLite the transaction is BEGIN IMMEDIATE, which serialises claimers. A row whose
    lease expired (its worker crashed or froze) is due again. A row waits while an earlier row
    of its order key to its destination is pending; once that one is delivered or given up,
    it goes.
    """
    now = now or utcnow()
    earlier = aliased(OutboxMessage)
    query = (
        select(OutboxMessage)
        .where(
            OutboxMessage.state == OutboxState.PENDING.value,
            OutboxMessage.next_attempt_at <= now,
            or_(OutboxMessage.lease_expires_at.is_(None), OutboxMessage.lease_expires_at <= now),
            or_(
                OutboxMessage.order_key.is_(None),
                ~select(earlier.id)
                .where(
                    earlier.order_key == OutboxMessage.order_key,
                    earlier.destination_party == OutboxMessage.destination_party,
                    earlier.state == OutboxState.PENDING.value,
                    earlier.id < OutboxMessage.id,
                )
                .exists(),
            ),
        )
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if skip_peers:
        query = query.where(OutboxMessage.peer_key.not_in(list(skip_peers)))
    claims = []
    expires = now + timedelta(seconds=lease_seconds)
    for row in session.scalars(query):
        row.lease_owner = owner
        row.lease_version += 1
        row.lease_expires_at = expires
        row.attempts += 1
        claims.append(
            Claim(
                id=row.id,
                owner=owner,
                version=row.lease_version,
                kind=row.kind,
                message_id=row.message_id,
                sender_party=row.sender_party,
                destination_party=row.destination_party,
                target_url=row.target_url,
                subscription_id=row.subscription_id,
                peer_key=row.peer_key,
                order_key=row.order_key,
                content_type=row.content_type,
                headers=dict(row.headers),
                payload=row.payload,
                attempts=row.attempts,
                give_up_at=row.give_up_at,
                permit_wait_until=row.permit_wait_until,
                claimed_at=now,
                lease_expires_at=expires,
            )
        )
    session.flush()
    return claims


def _fenced_update(session: Session, claim: Claim, values: dict[str, Any]) -> None:
    """Write ``values`` only if ``claim`` still holds the row's lease, else EPIX-DLV-005."""
    result = session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.id == claim.id,
            OutboxMessage.state == OutboxState.PENDING.value,
            OutboxMessage.lease_owner == claim.owner,
            OutboxMessage.lease_version == claim.version,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        raise EpixError.of(
            "EPIX-DLV-005",
            f"Outbox row {claim.id} is no longer leased to this worker (lease {claim.version}); "
            "another worker re-claimed it, so this late outcome is discarded.",
            f"outbox/{claim.id}",
        )


def _count(session: Session, outcome: OutboxOutcome) -> None:
    """Add one to a running total, in the transaction that marks the row (its rows exist
    from the migration on)."""
    session.execute(
        update(OutboxTotal)
        .where(OutboxTotal.outcome == outcome.value)
        .values(count=OutboxTotal.count + 1)
    )


def totals(session: Session) -> dict[OutboxOutcome, int]:
    """Rows ever delivered and given up (monitoring): two primary-key rows."""
    rows = session.execute(select(OutboxTotal.outcome, OutboxTotal.count)).all()
    return {OutboxOutcome(outcome): int(count) for outcome, count in rows}


def mark_delivered(
    session: Session,
    claim: Claim,
    *,
    receipt: bytes | None = None,
    response_status: int | None = None,
    now: datetime | None = None,
) -> None:
    """Record success; refused with EPIX-DLV-005 if the lease was lost.

    A delivered permit wakes the rows about it to the same Party that wait for it (refused
    for not holding it, ``WAITING_FOR_PERMIT``, even if a later attempt met an outage): they
    are due now, not at the end of their backoff.
    """
    now = now or utcnow()
    _fenced_update(
        session,
        claim,
        {
            "state": OutboxState.DELIVERED.value,
            "delivered_at": now,
            "receipt": receipt,
            "response_status": response_status,
            "lease_owner": None,
            "lease_expires_at": None,
            "last_error_code": None,
            "last_error": None,
        },
    )
    _count(session, OutboxOutcome.DELIVERED)
    if claim.kind == OutboxKind.PERMIT.value and claim.order_key is not None:
        session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.order_key == claim.order_key,
                OutboxMessage.destination_party == claim.destination_party,
                OutboxMessage.state == OutboxState.PENDING.value,
                # Refused for the permit, whatever its last attempt met since (an outage).
                or_(
                    OutboxMessage.last_error_code == WAITING_FOR_PERMIT,
                    OutboxMessage.permit_wait_until.is_not(None),
                ),
                OutboxMessage.next_attempt_at > now,
            )
            .values(next_attempt_at=now)
            .execution_options(synchronize_session=False)
        )


def mark_attempt_failed(
    session: Session,
    claim: Claim,
    *,
    code: str,
    reason: str,
    retry_at: datetime | None,
    response_status: int | None = None,
    now: datetime | None = None,
    permit_wait_until: datetime | None = None,
) -> bool:
    """Record a failed attempt: retry at ``retry_at``, or fail for good.

    The row becomes ``failed`` when ``retry_at`` is None (a permanent refusal) or falls after
    the row's give-up time. ``permit_wait_until`` is stored with a refusal for the permit
    (``WAITING_FOR_PERMIT``), whose caller applies it; the give-up time never moves. Returns
    True when the row is now ``failed``.
    """
    now = now or utcnow()
    give_up = retry_at is None or retry_at >= claim.give_up_at
    values: dict[str, Any] = {
        "last_error_code": code,
        "last_error": reason,
        "response_status": response_status,
        "lease_owner": None,
        "lease_expires_at": None,
    }
    if permit_wait_until is not None:
        values.update(permit_wait_until=permit_wait_until)
    if give_up:
        values.update(state=OutboxState.FAILED.value, failed_at=now)
    else:
        values.update(next_attempt_at=retry_at)
    _fenced_update(session, claim, values)
    if give_up:
        _count(session, OutboxOutcome.GIVEN_UP)
    return give_up


def permit_delivered_during(session: Session, claim: Claim) -> bool:
    """Whether the permit ``claim``'s row is about reached the same Party after the row was
    claimed: a refusal for not holding it (EPIX-MSG-011) then crossed that delivery, whose
    wake-up (``mark_delivered``) found the row out for this attempt, so it is due again now.

    Locks the permit's rows first, as ``mark_delivered`` does: on PostgreSQL a delivery
    committing meanwhile is waited for and seen, or waits for this transaction and then wakes
    the row it wrote (SQLite runs one writer at a time)."""
    if claim.order_key is None:
        return False
    delivered = session.execute(
        select(OutboxMessage.state, OutboxMessage.delivered_at)
        .where(
            OutboxMessage.kind == OutboxKind.PERMIT.value,
            OutboxMessage.order_key == claim.order_key,
            OutboxMessage.destination_party == claim.destination_party,
        )
        .with_for_update()
    ).all()
    return any(
        state == OutboxState.DELIVERED.value and at is not None and at >= claim.claimed_at
        for state, at in delivered
    )


def gives_up_at(row: OutboxMessage) -> datetime:
    """When a row fails for good if nothing changes: its give-up time, or the end of its wait
    for the permit while the far end refuses it for that (``WAITING_FOR_PERMIT``)."""
    if row.last_error_code == WAITING_FOR_PERMIT and row.permit_wait_until is not None:
        return min(row.give_up_at, row.permit_wait_until)
    return row.give_up_at


def progress(row: OutboxMessage) -> dict[str, object]:
    """How far a row got, as tracking and an endorsement's forwarding show it: its attempts,
    the last error (none once delivered) and, while pending, when it is tried next and when it
    fails for good (EPIX-DLV-014 while the importer's node waits for the permit)."""
    delivered = row.state == OutboxState.DELIVERED.value
    pending = row.state == OutboxState.PENDING.value
    return {
        "attempts": row.attempts,
        "error_code": None if delivered else row.last_error_code,
        "error": None if delivered else row.last_error,
        "next_attempt_at": row.next_attempt_at.isoformat() if pending else None,
        "give_up_at": gives_up_at(row).isoformat() if pending else None,
    }


def release(session: Session, claim: Claim, *, not_before: datetime) -> None:
    """Hand a claimed row back untried (its peer's circuit is open); the claim is not counted."""
    _fenced_update(
        session,
        claim,
        {
            "next_attempt_at": not_before,
            "lease_owner": None,
            "lease_expires_at": None,
            "attempts": OutboxMessage.attempts - 1,
        },
    )


def no_such_row(row_id: int) -> EpixError:
    """The refusal for an outbox row that does not exist (EPIX-DLV-009), or that the caller may
    not see: the same answer either way."""
    return EpixError.of("EPIX-DLV-009", f"No outbox row {row_id}.", f"outbox/{row_id}")


def get(session: Session, row_id: int) -> OutboxMessage:
    row = session.get(OutboxMessage, row_id)
    if row is None:
        raise no_such_row(row_id)
    return row


def list_rows(
    session: Session,
    *,
    state: OutboxState | None = None,
    sender_party: str | None = None,
    limit: int = 100,
    after_id: int | None = None,
) -> Sequence[OutboxMessage]:
    """Rows newest first, optionally for one sender or state (the sender sees its failures)."""
    query = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)
    if state is not None:
        query = query.where(OutboxMessage.state == state.value)
    if sender_party is not None:
        query = query.where(OutboxMessage.sender_party == sender_party)
    if after_id is not None:
        query = query.where(OutboxMessage.id < after_id)
    return session.scalars(query).all()


def count_by_state(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(OutboxMessage.state, func.count()).group_by(OutboxMessage.state)
    ).all()
    return {str(state): int(count) for state, count in rows}


@dataclass(frozen=True, slots=True)
class Backlog:
    """What is not delivered to one destination Party: ``pending`` rows (waiting, leased or
    due), of which ``due`` wait for a worker now and ``waiting_for_permit`` were refused by the
    far end for not holding their permit yet, and ``failed`` rows (given up)."""

    destination_party: str
    pending: int = 0
    due: int = 0
    waiting_for_permit: int = 0
    failed: int = 0
    longest_due_since: datetime | None = None  # when the row due the longest became due


def backlog(session: Session, *, now: datetime | None = None) -> list[Backlog]:
    """The undelivered rows per destination, for monitoring.

    Reads the pending and failed rows only (through the state index): delivered rows stay for
    the retention period, and walking them at every scrape would grow with the node's age.
    """
    now = now or utcnow()
    due = and_(
        OutboxMessage.next_attempt_at <= now,
        or_(OutboxMessage.lease_expires_at.is_(None), OutboxMessage.lease_expires_at <= now),
    )
    # A due row has waited for a worker since its next attempt came, or since the lease of a
    # worker that stopped holding it ran out; not since it was queued: a row retried for hours
    # (or waiting for its permit) is not a sign that workers are behind the moment it is due.
    due_since = case(
        (
            OutboxMessage.lease_expires_at > OutboxMessage.next_attempt_at,
            OutboxMessage.lease_expires_at,
        ),
        else_=OutboxMessage.next_attempt_at,
    )
    rows = session.execute(
        select(
            OutboxMessage.destination_party,
            OutboxMessage.state,
            func.count(),
            func.sum(case((due, 1), else_=0)),
            func.min(case((due, due_since))),
            func.sum(case((OutboxMessage.last_error_code == WAITING_FOR_PERMIT, 1), else_=0)),
        )
        .where(OutboxMessage.state.in_([OutboxState.PENDING.value, OutboxState.FAILED.value]))
        .group_by(OutboxMessage.destination_party, OutboxMessage.state)
    ).all()
    by_party: dict[str, Backlog] = {}
    for party, state, count, due_count, longest_due, waiting in rows:
        held = by_party.get(party, Backlog(party))
        if state == OutboxState.FAILED.value:
            held = replace(held, failed=int(count))
        else:
            held = replace(
                held,
                pending=int(count),
                due=int(due_count),
                waiting_for_permit=int(waiting),
                longest_due_since=longest_due,
            )
        by_party[party] = held
    return sorted(by_party.values(), key=lambda item: item.destination_party)


def resend(
    session: Session,
    row_id: int,
    *,
    give_up_seconds: int = DEFAULT_GIVE_UP_SECONDS,
    now: datetime | None = None,
) -> OutboxMessage:
    """Put a failed row back in the queue with a fresh give-up age (an admin's decision)."""
    now = now or utcnow()
    row = get(session, row_id)
    if row.state != OutboxState.FAILED.value:
        raise EpixError.of(
            "EPIX-DLV-008",
            f"Outbox row {row_id} is {row.state}; only a failed delivery can be resent.",
            f"outbox/{row_id}/state",
        )
    row.state = OutboxState.PENDING.value
    row.next_attempt_at = now
    row.give_up_at = now + timedelta(seconds=give_up_seconds)
    row.permit_wait_until = None
    row.failed_at = None
    row.resent_count += 1
    session.flush()
    return row
