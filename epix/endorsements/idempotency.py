"""Idempotency-Key on customs POSTs: a retry answers as the first request did and creates nothing.

The pattern of payment APIs (IETF draft "The Idempotency-Key HTTP Header Field", Stripe). When
the answer to a reservation, confirmation or endorsement is lost (a network drop at the border,
a proxy timeout, a tablet gone to sleep), the officer cannot know whether it was recorded;
sending the same request again with the same key is then safe.

A key is scoped to the caller's Party and the operation and remembered for
``EPIX_IDEMPOTENCY_KEY_HOURS``, with a fingerprint of the request and the answer it got, in
the transaction of the change itself. Only requests that changed something are remembered: a
refusal rolls its key back with it, so the request sent again is judged afresh.

Ordering is what makes concurrent retries safe. ``answer_once`` locks the permit row before it
looks the key up, so two copies of one request run one after the other and the second finds
the first's record (on PostgreSQL each statement sees what committed before it; SQLite runs one
writer at a time). The key row is inserted before anything else of the change, in a savepoint:
if a request with the same key on another permit committed meanwhile, the insert fails, the
savepoint is undone and that request's record decides. Inserting it before any audit event
means this wait never happens while holding the audit chain's lock (no deadlock).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import cast

from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from epix.audit.context import RequestContext
from epix.audit.service import record_event
from epix.auth.principal import Principal
from epix.db.base import utcnow
from epix.endorsements.models import IdempotencyRecord
from epix.endorsements.service import lock_visible_permit
from epix.errors import EpixError

KEY_HEADER = "Idempotency-Key"
KEY_MAX_LENGTH = 255
# Expired keys a new key's transaction deletes on its way (a few each time keeps the table at
# about one period's keys without a job of its own).
PURGE_BATCH = 100


class Operation(StrEnum):
    """What a key was used for; the same key may serve one request of each."""

    RESERVE = "reserve"
    CONFIRM = "confirm"
    ENDORSE = "endorse"

    @property
    def replay_action(self) -> str:
        return "reservation.replay" if self is Operation.RESERVE else "endorsement.replay"


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """The client's key and the SHA-256 fingerprint of the request it came with."""

    value: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Answer:
    """The answer to send, and whether it is the stored answer to an earlier request."""

    body: dict[str, object]
    replayed: bool


# Makes the change; returns the created reservation's or endorsement's id and the answer.
Create = Callable[[], tuple[str, dict[str, object]]]


def check_key(value: str) -> str:
    """The key as sent, or EPIX-REQ-012: 1 to 255 visible ASCII characters (no spaces)."""
    if not 1 <= len(value) <= KEY_MAX_LENGTH or not all("!" <= c <= "~" for c in value):
        raise EpixError.of(
            "EPIX-REQ-012",
            f"{KEY_HEADER} must be 1 to {KEY_MAX_LENGTH} visible ASCII characters "
            "(no spaces), e.g. a UUID.",
            KEY_HEADER,
        )
    return value


def answer_once(
    session: Session,
    key: IdempotencyKey | None,
    *,
    operation: Operation,
    actor: Principal,
    issuing_party: str,
    number: str,
    lifetime: timedelta,
    request: RequestContext | None,
    create: Create,
) -> Answer:
    """``create()``'s answer, or, for a key already used with this request, the answer it got.

    Raises EPIX-REQ-013 when the key was used for another request, EPIX-STATE-007 when the
    permit does not exist, and whatever ``create`` raises (the key is then not kept).
    """
    if key is None:
        return Answer(create()[1], replayed=False)
    # Before the key is read: its answer must not tell a permit the caller may not see exists.
    permit = lock_visible_permit(session, issuing_party, number, actor)
    at = utcnow()
    record = _claim(session, key, operation=operation, party=actor.party, at=at, lifetime=lifetime)
    if record.answer is not None:
        record_event(
            session,
            action=operation.replay_action,
            outcome="ok",
            actor=actor,
            party=permit.issuing_party,
            message_id=record.resource_id,
            permit_number=permit.number,
            request=request,
            permit_valid_until=permit.valid_until.date() if permit.valid_until else None,
            detail={
                "operation": operation.value,
                "idempotency_key": key.value,
                "first_answered_at": record.created_at.isoformat(),
            },
        )
        return Answer(cast(dict[str, object], json.loads(record.answer)), replayed=True)
    _purge_expired(session, at)
    record.resource_id, body = create()
    record.answer = json.dumps(body)
    return Answer(body, replayed=False)


def _claim(
    session: Session,
    key: IdempotencyKey,
    *,
    operation: Operation,
    party: str,
    at: datetime,
    lifetime: timedelta,
) -> IdempotencyRecord:
    """The earlier record of this key (same request), or a new one for this request."""
    scope: tuple[ColumnElement[bool], ...] = (
        IdempotencyRecord.party == party,
        IdempotencyRecord.operation == operation.value,
        IdempotencyRecord.key == key.value,
    )
    # A key whose time ran out may be used again. A Core DELETE: it may find the row gone
    # already (another transaction's purge), which an ORM delete would take for an error.
    session.execute(delete(IdempotencyRecord).where(*scope, IdempotencyRecord.expires_at <= at))
    earlier = _earlier(session, scope)
    if earlier is None:
        record = IdempotencyRecord(
            party=party,
            operation=operation.value,
            key=key.value,
            fingerprint=key.fingerprint,
            created_at=at,
            expires_at=at + lifetime,
        )
        try:
            with session.begin_nested():
                session.add(record)
        except IntegrityError:
            # The same key, committed meanwhile by a request on another permit (one on this
            # permit would have waited for its lock and found the record above).
            earlier = _earlier(session, scope)
            if earlier is None:  # and already gone again: let the client ask once more
                raise EpixError.of(
                    "EPIX-REQ-014",
                    f"Another request with this {KEY_HEADER} was being processed at the same "
                    "moment; send yours again.",
                    KEY_HEADER,
                ) from None
        else:
            return record
    if earlier.fingerprint != key.fingerprint:
        raise EpixError.of(
            "EPIX-REQ-013",
            f"This {KEY_HEADER} was used at {earlier.created_at.isoformat()} for a different "
            f"request ({operation.value}); use a new key for a new request.",
            KEY_HEADER,
        )
    return earlier


def _earlier(session: Session, scope: tuple[ColumnElement[bool], ...]) -> IdempotencyRecord | None:
    return session.scalar(
        select(IdempotencyRecord).where(*scope).execution_options(populate_existing=True)
    )


def _purge_expired(session: Session, at: datetime) -> None:
    """Delete up to ``PURGE_BATCH`` expired keys; rows another transaction holds are skipped,
    never waited for."""
    due = session.scalars(
        select(IdempotencyRecord.id)
        .where(IdempotencyRecord.expires_at <= at)
        .order_by(IdempotencyRecord.expires_at)
        .limit(PURGE_BATCH)
        .with_for_update(skip_locked=True)
    ).all()
    if due:
        session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id.in_(due)))
