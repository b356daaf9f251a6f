"""Audit tables: the hash-chained event log, its chain head and its signed checkpoints."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from epix.db.base import Base

# Characters of a request path and of a client address the trail keeps; ``record_event`` cuts
# longer ones to fit.
PATH_LENGTH = 2000
REMOTE_ADDR_LENGTH = 64


class AuditEvent(Base):
    """One event. Rows are only ever inserted; ``hash`` covers the content and ``prev_hash``."""

    __tablename__ = "audit_events"

    sequence: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    occurred_at: Mapped[datetime]
    action: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(32))
    actor_user_id: Mapped[int | None] = mapped_column(Integer)
    actor_username: Mapped[str | None] = mapped_column(String(150))
    actor_party: Mapped[str | None] = mapped_column(String(8))
    actor_authority: Mapped[str | None] = mapped_column(String(200))
    actor_api_key_id: Mapped[int | None] = mapped_column(Integer)
    party: Mapped[str | None] = mapped_column(String(8))
    message_id: Mapped[str | None] = mapped_column(String(200))
    permit_number: Mapped[str | None] = mapped_column(String(64))
    method: Mapped[str | None] = mapped_column(String(16))
    path: Mapped[str | None] = mapped_column(String(PATH_LENGTH))
    headers: Mapped[str] = mapped_column(Text)
    remote_addr: Mapped[str | None] = mapped_column(String(REMOTE_ADDR_LENGTH))
    payload_sha256: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text)
    purge_after: Mapped[date] = mapped_column(Date)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_audit_events_occurred_at", "occurred_at"),
        Index("ix_audit_events_message_id", "message_id"),
        Index("ix_audit_events_permit_number", "permit_number"),
    )


class AuditChainHead(Base):
    """The single row naming the last event: writers lock it, and truncation at the tail shows."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    sequence: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class AuditCheckpoint(Base):
    """A node-signed statement "the chain had this head hash at this sequence".

    Checkpoints are written unsigned every N events inside ``record_event`` (the writer holds no
    key) and signed by whoever holds the node key; a purge anchors the surviving chain on one.
    """

    __tablename__ = "audit_checkpoints"

    sequence: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    head_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    signed_at: Mapped[datetime | None]
    signature: Mapped[str | None] = mapped_column(Text)
    certificate_pem: Mapped[str | None] = mapped_column(Text)
