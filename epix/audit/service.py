"""The audit trail: append-only, hash-chained events written in the caller's transaction.

Each event's ``hash`` is SHA-256 over its canonical content, which includes the previous event's
hash, so changing, deleting or reordering any row breaks the chain at that row. Writers serialise
on the chain head: SQLite already runs every transaction as ``BEGIN IMMEDIATE``; on PostgreSQL a
transaction-scoped advisory lock is taken before the head is read, so concurrent writers never
fork the chain. The lock is held until the caller commits: record the event late in the
transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import bindparam, func, insert, select, text, update
from sqlalchemy.orm import Session

from epix.audit.context import HEADER_ALLOWLIST, RequestContext
from epix.audit.models import (
    PATH_LENGTH,
    REMOTE_ADDR_LENGTH,
    AuditChainHead,
    AuditCheckpoint,
    AuditEvent,
)
from epix.audit.signing import CheckpointSigner, node_checkpoint_signer, sign_checkpoint
from epix.auth.principal import Principal
from epix.db.base import table_of, utcnow
from epix.db.prepared import Prepared
from epix.settings import Settings, get_settings

GENESIS_HASH = "0" * 64
# The action of the event a purge records; verification accepts a cut chain only after one.
PURGE_ACTION = "audit_purge"
HEAD_ROW_ID = 1
# Arbitrary constant naming the audit chain's PostgreSQL advisory lock.
_PG_LOCK_KEY = 0x45504958_41554454 & 0x7FFFFFFFFFFFFFFF
# Header names that carry credentials; never recorded even if someone widens the allowlist.
_CREDENTIAL_HEADERS = frozenset({"authorization", "x-api-key", "cookie", "proxy-authorization"})


@dataclass(frozen=True, slots=True)
class AuditPolicy:
    """How often to checkpoint, how long to keep records, and who signs checkpoints.

    ``signer`` is called (lazily, when a checkpoint is due) for the node key; without one,
    checkpoints are written unsigned and ``epix audit checkpoint`` signs them later.
    """

    checkpoint_every: int = 1000
    retention_years: int = 5
    signer: Callable[[], CheckpointSigner] | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, signer: Callable[[], CheckpointSigner] | None = None
    ) -> AuditPolicy:
        return cls(settings.audit_checkpoint_every, settings.retention_years, signer)

    @classmethod
    def for_node(cls, settings: Settings) -> AuditPolicy:
        """A node process's policy (web, worker, CLI): checkpoints signed with the node key as
        they fall due, not left for ``epix audit checkpoint``."""
        return cls.from_settings(settings, signer=lambda: node_checkpoint_signer(settings))


_policy: AuditPolicy | None = None


def configure_audit(policy: AuditPolicy) -> None:
    """Set the process-wide policy (the app factory and the CLI call this with their settings)."""
    global _policy
    _policy = policy


def current_policy() -> AuditPolicy:
    return _policy if _policy is not None else AuditPolicy.from_settings(get_settings())


def format_time(moment: datetime) -> str:
    """UTC with millisecond precision: the audit trail's one time format."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def canonical_json(value: object) -> str:
    """Keys sorted, no spaces, non-ASCII unescaped: the form event hashes cover."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def canonical_content(event: AuditEvent) -> bytes:
    """The bytes an event's hash covers: every column except the hash itself."""
    document = {
        "sequence": event.sequence,
        "occurred_at": format_time(event.occurred_at),
        "action": event.action,
        "outcome": event.outcome,
        "actor_user_id": event.actor_user_id,
        "actor_username": event.actor_username,
        "actor_party": event.actor_party,
        "actor_authority": event.actor_authority,
        "actor_api_key_id": event.actor_api_key_id,
        "party": event.party,
        "message_id": event.message_id,
        "permit_number": event.permit_number,
        "method": event.method,
        "path": event.path,
        "headers": event.headers,
        "remote_addr": event.remote_addr,
        "payload_sha256": event.payload_sha256,
        "detail": event.detail,
        "purge_after": event.purge_after.isoformat(),
        "prev_hash": event.prev_hash,
    }
    return canonical_json(document).encode("utf-8")


def compute_hash(event: AuditEvent) -> str:
    return hashlib.sha256(canonical_content(event)).hexdigest()


def add_years(day: date, years: int) -> date:
    """The same calendar day ``years`` later; 29 February's is 1 March (the 28th would come
    before the full years have passed)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, month=3, day=1)


def earliest_purge_date(
    occurred_on: date,
    *,
    retention_years: int,
    permit_valid_until: date | None = None,
    trade_year: int | None = None,
) -> date:
    """The first day a record may be purged: the latest of the retention periods that apply.

    Kept ``retention_years`` after the permit's expiry and after the end of the annual-report
    year covering the trade. When the trade year is unknown, the permit can still be used up to
    its expiry, so the expiry year is assumed (the later possibility); with neither, the event's
    own year. Never earlier than ``retention_years`` after the event itself.

    A record becomes purgeable at 00:00 UTC of the date returned, so the periods run to the end
    of the anniversary of the event's day and of the permit's last valid day: due on the
    anniversary itself, an event of 23:59 or a permit valid through that day went hours early.
    """
    after_day = timedelta(days=1)
    if trade_year is None:
        trade_year = permit_valid_until.year if permit_valid_until else occurred_on.year
    try:
        candidates = [add_years(occurred_on, retention_years) + after_day]
        if permit_valid_until is not None:
            candidates.append(add_years(permit_valid_until, retention_years) + after_day)
        candidates.append(date(trade_year + 1 + retention_years, 1, 1))
    except (ValueError, OverflowError):
        # A period ending past 9999-12-31 (a permit valid into the year 9999, which the rules
        # allow): kept to the last day a date can name. Raised, it failed the permit's storing.
        return date.max
    return max(candidates)


# Every audited request runs these; compiled once and run on the DBAPI cursor (epix.db.prepared).
_HEADS, _EVENTS = table_of(AuditChainHead), table_of(AuditEvent)
_PG_LOCK = Prepared(text("SELECT pg_advisory_xact_lock(:key)"))
_READ_HEAD = Prepared(select(_HEADS.c.sequence, _HEADS.c.hash).where(_HEADS.c.id == HEAD_ROW_ID))
_INSERT_HEAD = Prepared(insert(_HEADS))
_MOVE_HEAD = Prepared(
    update(_HEADS)
    .where(_HEADS.c.id == HEAD_ROW_ID)
    .values(sequence=bindparam("new_sequence"), hash=bindparam("new_hash"))
)
_INSERT_EVENT = Prepared(insert(_EVENTS))
_EVENT_TIME = Prepared(
    select(_EVENTS.c.occurred_at).where(_EVENTS.c.sequence == bindparam("sequence"))
)


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last event's sequence and hash, as read under the chain lock."""

    sequence: int
    hash: str


def lock_chain_head(session: Session) -> ChainHead:
    """The chain head, locked for this transaction (created on first use).

    Prepared Core statements: every audited request runs this, and the head row is never kept
    in a session's identity map, so a Core update cannot leave a stale ORM copy behind.
    """
    if session.get_bind().dialect.name == "postgresql":
        _PG_LOCK.execute(session, {"key": _PG_LOCK_KEY})
    row = _READ_HEAD.first(session)
    if row is None:
        _INSERT_HEAD.execute(session, {"id": HEAD_ROW_ID, "sequence": 0, "hash": GENESIS_HASH})
        return ChainHead(0, GENESIS_HASH)
    return ChainHead(row.sequence, row.hash)


def _safe_headers(request: RequestContext | None) -> str:
    if request is None:
        return "{}"
    kept = {
        name.lower(): value
        for name, value in request.headers.items()
        if name.lower() in HEADER_ALLOWLIST and name.lower() not in _CREDENTIAL_HEADERS
    }
    return canonical_json(kept)


def _fitted(text: str | None, length: int) -> str | None:
    """A request's path or client address cut to what its column holds: any caller can send a
    long path, and a proxy passing X-Forwarded-For through sets the address; too long, they
    failed the insert on PostgreSQL, so the refusal they came with went unaudited."""
    if text is None or len(text) <= length:
        return text
    return text[: length - 1] + "…"


def _chain_time(session: Session, head: ChainHead) -> datetime:
    """Now, but never before the previous event: if the clock steps back (an NTP correction, a
    restored virtual machine), events keep the last time until it catches up, so ordering the
    trail by time never contradicts its chain."""
    now = utcnow()
    previous: datetime | None = _EVENT_TIME.scalar(session, {"sequence": head.sequence})
    return now if previous is None or now >= previous else previous


def record_event(
    session: Session,
    *,
    action: str,
    outcome: str,
    actor: Principal | None = None,
    party: str | None = None,
    message_id: str | None = None,
    permit_number: str | None = None,
    request: RequestContext | None = None,
    payload: bytes | None = None,
    payload_sha256: str | None = None,
    detail: dict[str, object] | None = None,
    permit_valid_until: date | None = None,
    trade_year: int | None = None,
) -> AuditEvent:
    """Append one event to the chain in the caller's transaction (the caller commits).

    ``outcome`` is ``"ok"`` or the EPIX code that decided the request. Pass ``payload`` (hashed
    here) or its ``payload_sha256``; the payload itself is never stored in the audit trail.
    ``permit_valid_until`` and ``trade_year`` set how long the record must be kept.
    Returns the event as written (a detached object: the row itself goes in as Core INSERT).
    """
    if payload is not None:
        payload_sha256 = hashlib.sha256(payload).hexdigest()
    policy = current_policy()
    head = lock_chain_head(session)
    occurred_at = _chain_time(session, head)
    event = AuditEvent(
        sequence=head.sequence + 1,
        occurred_at=occurred_at,
        action=action,
        outcome=outcome,
        actor_user_id=actor.user_id if actor else None,
        actor_username=actor.username if actor else None,
        actor_party=actor.party if actor else None,
        actor_authority=actor.authority if actor else None,
        actor_api_key_id=actor.api_key_id if actor else None,
        party=party,
        message_id=message_id,
        permit_number=permit_number,
        method=request.method if request else None,
        path=_fitted(request.path, PATH_LENGTH) if request else None,
        headers=_safe_headers(request),
        remote_addr=_fitted(request.remote_addr, REMOTE_ADDR_LENGTH) if request else None,
        payload_sha256=payload_sha256,
        detail=canonical_json(detail or {}),
        purge_after=earliest_purge_date(
            occurred_at.date(),
            retention_years=policy.retention_years,
            permit_valid_until=permit_valid_until,
            trade_year=trade_year,
        ),
        prev_hash=head.hash,
    )
    event.hash = compute_hash(event)
    _INSERT_EVENT.execute(
        session, {column.key: getattr(event, column.key) for column in _EVENTS.columns}
    )
    _MOVE_HEAD.execute(session, {"new_sequence": event.sequence, "new_hash": event.hash})
    if policy.checkpoint_every > 0 and event.sequence % policy.checkpoint_every == 0:
        checkpoint = AuditCheckpoint(
            sequence=event.sequence, head_hash=event.hash, created_at=occurred_at
        )
        if policy.signer is not None:
            sign_checkpoint(checkpoint, policy.signer())
        session.add(checkpoint)
        session.flush()
    return event


def event_as_dict(event: AuditEvent) -> dict[str, object]:
    """An event as plain JSON values, for export to investigators."""
    return {
        "sequence": event.sequence,
        "occurred_at": format_time(event.occurred_at),
        "action": event.action,
        "outcome": event.outcome,
        "actor": {
            "user_id": event.actor_user_id,
            "username": event.actor_username,
            "party": event.actor_party,
            "authority": event.actor_authority,
            "api_key_id": event.actor_api_key_id,
        },
        "party": event.party,
        "message_id": event.message_id,
        "permit_number": event.permit_number,
        "method": event.method,
        "path": event.path,
        "headers": json.loads(event.headers),
        "remote_addr": event.remote_addr,
        "payload_sha256": event.payload_sha256,
        "detail": json.loads(event.detail),
        "purge_after": event.purge_after.isoformat(),
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def period_span(
    session: Session, *, start: datetime | None = None, end: datetime | None = None
) -> tuple[int, int] | None:
    """The first and last sequence with ``start <= occurred_at < end`` (None: no event)."""
    span = select(func.min(AuditEvent.sequence), func.max(AuditEvent.sequence))
    if start is not None:
        span = span.where(AuditEvent.occurred_at >= start)
    if end is not None:
        span = span.where(AuditEvent.occurred_at < end)
    first, last = session.execute(span).one()
    return None if first is None else (first, last)


def events_between(session: Session, first: int, last: int) -> Iterator[AuditEvent]:
    """Events ``first..last`` (a ``period_span``) in sequence order, in batches of 500.

    The whole run of the chain between them, never a selection by time inside it: a trail
    written while the clock stepped back would otherwise come out with holes, and its chain
    would not verify. Each batch is a range of the primary key: filtered by time, every batch
    searched and sorted the whole period again (80,000 events: 160 batches, 4.8 s, growing with
    the square of the period).
    """
    after = first - 1
    while True:
        batch = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.sequence > after, AuditEvent.sequence <= last)
            .order_by(AuditEvent.sequence)
            .limit(500)
        ).all()
        if not batch:
            return
        yield from batch
        after = batch[-1].sequence
