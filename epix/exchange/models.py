"""Exchange tables: received messages byte-exact, receipts, permits and their lines, inboxes.

``messages.body`` holds exactly the bytes that were signed and received; nothing ever rewrites
them. The endorsement ledger builds on ``permits`` / ``permit_lines`` (it locks the permit row).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from epix.db.base import Base

MESSAGE_ID_MAX_LENGTH = 128


class Message(Base):
    """One accepted submission: the exact signed bytes, their SHA-256 and the envelope."""

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sender_party: Mapped[str] = mapped_column(String(8))
    message_id: Mapped[str] = mapped_column(String(MESSAGE_ID_MAX_LENGTH))
    recipient_party: Mapped[str] = mapped_column(String(8))
    document_type: Mapped[str] = mapped_column(String(32))
    conversation_id: Mapped[str | None] = mapped_column(String(128))
    sha256: Mapped[str] = mapped_column(String(64))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime]
    # accepted | accepted_with_warnings (rejected submissions are never stored).
    status: Mapped[str] = mapped_column(String(32))
    # pending | delivered | acknowledged | failed: how far delivery to the recipient got.
    delivery_state: Mapped[str] = mapped_column(String(16))
    delivery_detail: Mapped[str | None] = mapped_column(Text)
    submitted_by: Mapped[str] = mapped_column(String(150))

    __table_args__ = (
        UniqueConstraint("sender_party", "message_id"),
        Index("ix_messages_recipient_party", "recipient_party"),
    )


class Receipt(Base):
    """The node-signed receipt issued for an accepted message (returned again on a replay)."""

    __tablename__ = "receipts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_pk: Mapped[int] = mapped_column(ForeignKey("messages.id"), unique=True)
    status: Mapped[str] = mapped_column(String(32))
    codes: Mapped[str] = mapped_column(Text)  # space-separated finding codes
    issued_at: Mapped[datetime]
    body: Mapped[bytes] = mapped_column(LargeBinary)


# The longest issuing Party code and permit number a permit row holds (a lookup of a longer
# one is refused as malformed, epix.exchange.lookup).
PARTY_MAX_LENGTH = 8
NUMBER_MAX_LENGTH = 64


class Permit(Base):
    """A permit as received: one row per (issuing Party, number); status moves, bytes never do."""

    __tablename__ = "permits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issuing_party: Mapped[str] = mapped_column(String(PARTY_MAX_LENGTH))
    number: Mapped[str] = mapped_column(String(NUMBER_MAX_LENGTH))
    document_type: Mapped[str] = mapped_column(String(4))
    recipient_party: Mapped[str] = mapped_column(String(8))
    message_pk: Mapped[int] = mapped_column(ForeignKey("messages.id"))
    signed_sha256: Mapped[str] = mapped_column(String(64))
    # SHA-256 of the issuer's lookup token; only its holder (and the two Parties) may look up.
    security_token_sha256: Mapped[str | None] = mapped_column(String(64))
    # issued | endorsed | used | cancelled | replaced (expired is computed from valid_until).
    status: Mapped[str] = mapped_column(String(16))
    valid_from: Mapped[datetime | None]
    valid_until: Mapped[datetime | None]
    replaced_by_id: Mapped[int | None] = mapped_column(ForeignKey("permits.id"))
    status_reason: Mapped[str | None] = mapped_column(Text)
    status_changed_at: Mapped[datetime | None]
    signer_fingerprint: Mapped[str | None] = mapped_column(String(64))
    signer_subject: Mapped[str | None] = mapped_column(Text)
    compliance_codes: Mapped[str] = mapped_column(Text)  # JSON list of warning findings
    created_at: Mapped[datetime]

    lines: Mapped[list[PermitLine]] = relationship(
        back_populates="permit", order_by="PermitLine.id", lazy="selectin"
    )

    __table_args__ = (UniqueConstraint("issuing_party", "number"),)

    @property
    def exporter_party(self) -> str:
        """The Party whose customs give the export endorsement.

        An import permit (type I) is issued by the importing Party and sent to the exporting
        one; every other document is issued by the exporting (or re-exporting) Party.
        """
        return self.recipient_party if self.document_type == "I" else self.issuing_party

    @property
    def importer_party(self) -> str:
        """The Party whose customs inspect the consignment on import (Art. VI.6)."""
        return self.issuing_party if self.document_type == "I" else self.recipient_party


class PermitLine(Base):
    """One line item with its permitted quantity (box 11): the ledger's upper bound."""

    __tablename__ = "permit_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    permit_id: Mapped[int] = mapped_column(ForeignKey("permits.id"))
    line_id: Mapped[str] = mapped_column(String(64))
    permitted_quantity: Mapped[Decimal] = mapped_column(Numeric(20, 6))
    unit: Mapped[str | None] = mapped_column(String(16))
    appendix: Mapped[str | None] = mapped_column(String(8))
    taxon: Mapped[str | None] = mapped_column(String(300))

    permit: Mapped[Permit] = relationship(back_populates="lines")

    __table_args__ = (UniqueConstraint("permit_id", "line_id"),)


class PermitWatcher(Base):
    """A Party that received, pulled or looked a permit up, and so is told of status changes."""

    __tablename__ = "permit_watchers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    permit_id: Mapped[int] = mapped_column(ForeignKey("permits.id"))
    party: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(String(16))  # recipient | pulled | lookup
    since: Mapped[datetime]

    __table_args__ = (UniqueConstraint("permit_id", "party"),)


class InboxEntry(Base):
    """One item in a Party's inbox: a received message or a notification.

    ``id`` is the cursor sequence (stable order). A pull leases the entry to one caller until
    ``lease_expires_at``; an unacknowledged entry whose lease expired is pulled again.
    """

    __tablename__ = "inbox_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recipient_party: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(32))  # message | status | user_disabled | ...
    message_pk: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    subject: Mapped[str | None] = mapped_column(String(300))
    payload: Mapped[bytes | None] = mapped_column(LargeBinary)
    content_type: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]
    pull_count: Mapped[int] = mapped_column(Integer)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(150))

    message: Mapped[Message | None] = relationship(lazy="joined")

    __table_args__ = (
        Index("ix_inbox_entries_pending", "recipient_party", "acknowledged_at", "id"),
        UniqueConstraint("recipient_party", "message_pk"),
    )
