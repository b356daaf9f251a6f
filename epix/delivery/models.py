"""Outbox rows and webhook subscriptions.

An outbox row is written in the same transaction as the change that caused it, so a message
leaves the node if and only if that change committed. A row is claimed with a lease: the
owner id and a fencing version that grows with every claim let a worker whose lease expired
find out, at its late write, that another worker owns the row now.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from epix.db.base import Base, utcnow


class OutboxKind(StrEnum):
    """What a row carries; the exchange's document types ``permit`` and ``status`` map here."""

    PERMIT = "permit"
    ENDORSEMENT = "endorsement"
    STATUS_CHANGE = "status_change"
    RECEIPT = "receipt"
    WEBHOOK = "webhook"
    NOTIFICATION = "notification"

    @classmethod
    def of(cls, value: str) -> OutboxKind:
        """The kind for a value or an exchange document type (``status`` is a status change)."""
        return cls.STATUS_CHANGE if value == "status" else cls(value)


class OutboxState(StrEnum):
    """``pending`` rows are due or waiting (a leased row is still pending); the rest are final."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class OutboxMessage(Base):
    __tablename__ = "delivery_outbox"
    __table_args__ = (
        Index("ix_delivery_outbox_due", "state", "next_attempt_at"),
        # Tracking finds a message's row by all three (an index on message_id alone lost to
        # sender_party on SQLite, whose rowid order saved the sort, so it walked every row the
        # sender ever sent).
        Index("ix_delivery_outbox_message", "message_id", "sender_party", "destination_party"),
        # A sender's listing of one state, newest first ("what gave up"); all states take
        # the index on sender_party, whose rowid order needs no sort.
        Index("ix_delivery_outbox_sender_state", "sender_party", "state"),
        # Every sender's rows of one state, newest first (a node admin's listing): the due
        # index orders a state by next attempt, so each page sorted the whole state.
        Index("ix_delivery_outbox_state", "state"),
        # Claiming asks whether an earlier row of the same permit to the same Party is
        # still pending (a cancellation waits for the permit it cancels).
        Index("ix_delivery_outbox_order", "order_key", "destination_party", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # kind + destination + message id (+ subscription): enqueueing the same thing twice is a no-op.
    dedupe_key: Mapped[str] = mapped_column(String(400), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    message_id: Mapped[str] = mapped_column(String(200))
    sender_party: Mapped[str] = mapped_column(String(8), index=True)
    destination_party: Mapped[str] = mapped_column(String(8))
    target_url: Mapped[str | None] = mapped_column(String(2000))
    subscription_id: Mapped[int | None] = mapped_column(Integer)
    # What the circuit breaker counts failures by: a peer Party or a webhook host.
    peer_key: Mapped[str] = mapped_column(String(300))
    # Rows with the same key and destination are delivered in the order they were queued
    # (``permit_order_key``: a permit, then its endorsements and status changes); None: any order.
    order_key: Mapped[str | None] = mapped_column(String(120))
    content_type: Mapped[str] = mapped_column(String(200))
    headers: Mapped[dict[str, Any]] = mapped_column(JSON)
    payload: Mapped[bytes] = mapped_column(LargeBinary)

    state: Mapped[str] = mapped_column(String(16), default=OutboxState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    give_up_at: Mapped[datetime]
    # An endorsement the importing Party's node refused for not holding its permit yet
    # (EPIX-MSG-011): sent again until then (EPIX_OUTBOX_PERMIT_WAIT_SECONDS after the first such
    # refusal), a bound applied only while the far end keeps refusing for that reason.
    permit_wait_until: Mapped[datetime | None]

    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_version: Mapped[int] = mapped_column(Integer, default=0)
    lease_expires_at: Mapped[datetime | None]

    last_error_code: Mapped[str | None] = mapped_column(String(32))
    last_error: Mapped[str | None] = mapped_column(Text)
    response_status: Mapped[int | None] = mapped_column(Integer)
    # The peer's node-signed receipt, verified before the row was marked delivered.
    receipt: Mapped[bytes | None] = mapped_column(LargeBinary)
    delivered_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    resent_count: Mapped[int] = mapped_column(Integer, default=0)


class OutboxOutcome(StrEnum):
    """The running totals kept in ``OutboxTotal``."""

    DELIVERED = "delivered"
    GIVEN_UP = "given_up"


class OutboxTotal(Base):
    """How many rows were ever delivered or given up, counted in the transaction that marks
    each one: delivered rows stay for years, so /metrics must not count them row by row."""

    __tablename__ = "delivery_outbox_totals"

    outcome: Mapped[str] = mapped_column(String(16), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


class WebhookSubscription(Base):
    __tablename__ = "delivery_webhook_subscriptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    party: Mapped[str] = mapped_column(String(8), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(JSON)
    # The HMAC key must be usable at every delivery, so it is stored sealed (AES-GCM, see
    # webhooks.seal_secret), not hashed; rows from before sealing hold plain text until used.
    secret: Mapped[str] = mapped_column(String(200))
    # After a rotation, the secret it replaced (sealed likewise): deliveries are signed with
    # both until previous_secret_until, so the receiver can switch without losing any.
    previous_secret: Mapped[str | None] = mapped_column(String(200))
    previous_secret_until: Mapped[datetime | None]
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    disabled_at: Mapped[datetime | None]
