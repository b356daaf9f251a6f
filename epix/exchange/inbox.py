"""Party inboxes: pull with a cursor under a lease, fetch byte-exact, acknowledge.

An entry's id is its cursor sequence. A pull returns the oldest unacknowledged entries after the
cursor that nobody holds a live lease on (and any never pulled before, even behind the cursor:
see ``_claimable``), and leases them to the caller in the same transaction: on PostgreSQL the
candidate rows are claimed with ``FOR UPDATE SKIP LOCKED``, on SQLite the whole transaction is
``BEGIN IMMEDIATE``. Either way two concurrent pullers never get
the same entry (guarantee 5); an entry whose lease ran out unacknowledged is pulled again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import Select, bindparam, func, insert, or_, select
from sqlalchemy.orm import Session

from epix.db.base import table_of, utcnow
from epix.db.prepared import Prepared
from epix.errors import EpixError
from epix.exchange.models import InboxEntry

KIND_MESSAGE = "message"


@dataclass(frozen=True, slots=True)
class InboxPage:
    """One leased window of an inbox; ``next_cursor`` continues after its last entry."""

    entries: list[InboxEntry]
    lease_id: str
    lease_expires_at: datetime
    next_cursor: int | None


class Deliverable(Protocol):
    """What an inbox entry needs of a stored message (an ORM ``Message`` or a fresh row)."""

    @property
    def id(self) -> int: ...
    @property
    def document_type(self) -> str: ...
    @property
    def message_id(self) -> str: ...
    @property
    def sender_party(self) -> str: ...


_ENTRIES = table_of(InboxEntry)
# Every submission to a hosted Party runs these two (epix.db.prepared).
_ENTRY_OF_MESSAGE = Prepared(
    select(_ENTRIES.c.id).where(
        _ENTRIES.c.recipient_party == bindparam("party"),
        _ENTRIES.c.message_pk == bindparam("message_pk"),
    )
)
_INSERT_ENTRY = Prepared(insert(_ENTRIES).returning(_ENTRIES.c.id))


def deliver_to_inbox(
    session: Session, *, party: str, message: Deliverable, new: bool = False
) -> int:
    """Put a stored message into a Party's inbox on this node (idempotent per message).

    Returns the entry's id. ``new`` says the message was stored in this same transaction, so
    no entry can exist yet and the look-up is skipped. Prepared statements: this runs in every
    submission's transaction.
    """
    if not new:
        existing = _ENTRY_OF_MESSAGE.scalar(session, {"party": party, "message_pk": message.id})
        if existing is not None:
            return int(existing)
    entry_id = _INSERT_ENTRY.scalar(
        session,
        {
            "recipient_party": party,
            "kind": KIND_MESSAGE,
            "message_pk": message.id,
            "subject": f"{message.document_type} {message.message_id} from {message.sender_party}",
            "content_type": "application/xml",
            "created_at": utcnow(),
            "pull_count": 0,
        },
    )
    return int(entry_id)


def put_notification(
    session: Session, *, party: str, kind: str, subject: str, payload: bytes, content_type: str
) -> InboxEntry:
    """Put a notification (status document, user change, ...) into a Party's inbox."""
    entry = InboxEntry(
        recipient_party=party,
        kind=kind,
        subject=subject[:300],
        payload=payload,
        content_type=content_type,
        created_at=utcnow(),
        pull_count=0,
    )
    session.add(entry)
    session.flush()
    return entry


def _claimable(party: str, cursor: int | None, now: datetime) -> Select[int]:
    """Unacknowledged entries nobody holds a live lease on, after ``cursor`` or never pulled.

    Ids are taken from a sequence when a row is inserted but rows appear when their
    transaction commits, which on PostgreSQL may be after a higher id was pulled and the
    cursor moved past it. An entry never pulled is therefore claimable whatever the cursor says,
    so none is skipped for good; the cursor only passes over entries pulled before whose lease
    ran out (a pull without cursor gets those again).
    """
    query = (
        select(InboxEntry.id)
        .where(
            InboxEntry.recipient_party == party,
            InboxEntry.acknowledged_at.is_(None),
            or_(InboxEntry.lease_expires_at.is_(None), InboxEntry.lease_expires_at <= now),
        )
        .order_by(InboxEntry.id)
    )
    if cursor is not None:
        query = query.where(or_(InboxEntry.id > cursor, InboxEntry.pull_count == 0))
    return query


def pull(
    session: Session,
    *,
    party: str,
    cursor: int | None,
    limit: int,
    lease_seconds: int,
    skip_locked: bool,
) -> InboxPage:
    """Lease up to ``limit`` entries after ``cursor`` (exclusive) to one caller."""
    now = utcnow()
    query = _claimable(party, cursor, now).limit(limit)
    if skip_locked:
        query = query.with_for_update(skip_locked=True)
    ids = list(session.scalars(query))
    lease_id = uuid.uuid4().hex
    expires = now + timedelta(seconds=lease_seconds)
    entries: list[InboxEntry] = []
    if ids:
        entries = list(
            session.scalars(
                select(InboxEntry).where(InboxEntry.id.in_(ids)).order_by(InboxEntry.id)
            )
        )
    for entry in entries:
        entry.lease_owner = lease_id
        entry.lease_expires_at = expires
        entry.pull_count += 1
        if entry.message is not None and entry.message.delivery_state == "pending":
            entry.message.delivery_state = "delivered"
    session.flush()
    # An entry that committed late lies behind the cursor: the cursor never moves back.
    next_cursor = max(entries[-1].id, cursor or 0) if entries else cursor
    return InboxPage(entries, lease_id, expires, next_cursor)


def get_entry(
    session: Session, *, party: str, entry_id: int, for_update: bool = False
) -> InboxEntry:
    """One entry of the caller's own inbox; another Party's entry looks like a missing one.

    ``for_update`` locks the row and reads it as the lock holder committed it."""
    entry = session.get(
        InboxEntry,
        entry_id,
        # Only the entry's row: its message is joined (outer) and stays unlocked.
        with_for_update={"of": InboxEntry} if for_update else None,
        populate_existing=for_update,
    )
    if entry is None or entry.recipient_party != party:
        raise EpixError.of("EPIX-REQ-005", f"No inbox entry {entry_id}.", f"/v1/inbox/{entry_id}")
    return entry


def entry_bytes(entry: InboxEntry) -> bytes:
    """The entry's content, byte-exact: the stored message body or the notification."""
    if entry.message is not None:
        return entry.message.body
    return entry.payload or b""


def acknowledge(
    session: Session, *, party: str, entry_id: int, username: str, lease_id: str | None = None
) -> InboxEntry:
    """Mark an entry done. Acknowledging twice is harmless; under someone else's live lease it
    is refused (EPIX-MSG-005) when the caller names its own lease. The row is locked first, so
    the lease checked is the current one, not one a concurrent pull is replacing."""
    entry = get_entry(session, party=party, entry_id=entry_id, for_update=True)
    if entry.acknowledged_at is not None:
        return entry
    now = utcnow()
    if (
        lease_id is not None
        and entry.lease_owner != lease_id
        and entry.lease_expires_at is not None
        and entry.lease_expires_at > now
    ):
        raise EpixError.of(
            "EPIX-MSG-005",
            f"Inbox entry {entry_id} is leased to another puller until "
            f"{entry.lease_expires_at.isoformat()}.",
            f"/v1/inbox/{entry_id}",
        )
    entry.acknowledged_at = now
    entry.acknowledged_by = username
    entry.lease_expires_at = None
    if entry.message is not None:
        entry.message.delivery_state = "acknowledged"
    session.flush()
    return entry


@dataclass(frozen=True, slots=True)
class Waiting:
    """A Party's unacknowledged inbox entries (pulled or not) and when the oldest arrived."""

    party: str
    count: int
    oldest_created_at: datetime | None


def waiting_by_party(session: Session) -> list[Waiting]:
    """Unacknowledged entries per recipient, for monitoring.

    Acknowledged entries stay for the retention period, so this never walks them: the
    recipients are found by hopping through an index on recipient_party one Party at a time
    (a loose index scan, one probe per Party), then each Party's unacknowledged range of
    ``ix_inbox_entries_pending`` is counted.
    """
    party = _ENTRIES.c.recipient_party
    recipients = select(func.min(party).label("party")).cte("recipients", recursive=True)
    recipients = recipients.union_all(
        select(select(func.min(party)).where(party > recipients.c.party).scalar_subquery()).where(
            recipients.c.party.is_not(None)
        )
    )
    unacknowledged = (party == recipients.c.party) & _ENTRIES.c.acknowledged_at.is_(None)
    rows = session.execute(
        select(
            recipients.c.party,
            select(func.count()).where(unacknowledged).scalar_subquery(),
            select(func.min(_ENTRIES.c.created_at)).where(unacknowledged).scalar_subquery(),
        ).where(recipients.c.party.is_not(None))
    ).all()
    return [Waiting(code, int(count), oldest) for code, count, oldest in rows]
