"""Endorsement tables: signed endorsements, their lines, and quantity reservations.

The ledger is not a table of its own: permitted quantities live on ``permit_lines`` (exchange),
used quantities on ``endorsement_lines`` and held quantities on ``endorsement_reservation_lines``;
``epix.endorsements.ledger`` adds them up under a lock on the permit row.

``permit_id`` and ``permit_line_id`` hold the exchange rows' ids without a foreign key: domains
migrate on independent branches (no cross-domain constraints), and permit rows are never
deleted, only moved through their statuses.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import (
    Date,
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


class ReservationStatus(StrEnum):
    """Stored states; an ``active`` row past ``expires_at`` reads as ``expired``."""

    ACTIVE = "active"
    CONFIRMED = "confirmed"
    RELEASED = "released"
    EXPIRED = "expired"


class Endorsement(Base):
    """One signed endorsement; at most one per permit and side (one consignment, Art. VI.5)."""

    __tablename__ = "endorsements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Public id: the document's ID and the outbox message id.
    endorsement_id: Mapped[str] = mapped_column(String(64), unique=True)
    permit_id: Mapped[int] = mapped_column(Integer)
    side: Mapped[str] = mapped_column(String(8))
    endorsing_party: Mapped[str] = mapped_column(String(8))
    authority: Mapped[str] = mapped_column(String(200))
    officer: Mapped[str] = mapped_column(String(200))
    port: Mapped[str] = mapped_column(String(5))
    endorsed_on: Mapped[date] = mapped_column(Date)
    transport_document: Mapped[str] = mapped_column(String(200))
    declaration_reference: Mapped[str | None] = mapped_column(String(200))
    reservation_id: Mapped[int | None] = mapped_column(ForeignKey("endorsement_reservations.id"))
    # The signed endorsement document, byte-exact, and who signed it (authority key or node).
    document: Mapped[bytes] = mapped_column(LargeBinary)
    document_sha256: Mapped[str] = mapped_column(String(64))
    signed_by: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(150))

    lines: Mapped[list[EndorsementLine]] = relationship(
        back_populates="endorsement", order_by="EndorsementLine.id", lazy="selectin"
    )

    __table_args__ = (UniqueConstraint("permit_id", "side"),)


class EndorsementLine(Base):
    """The actual quantity recorded for one permit line."""

    __tablename__ = "endorsement_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    endorsement_pk: Mapped[int] = mapped_column(ForeignKey("endorsements.id"))
    permit_line_id: Mapped[int] = mapped_column(Integer)
    quantity: Mapped[Decimal] = mapped_column(Numeric(20, 6))
    unit: Mapped[str] = mapped_column(String(16))

    endorsement: Mapped[Endorsement] = relationship(back_populates="lines")

    __table_args__ = (UniqueConstraint("endorsement_pk", "permit_line_id"),)


class Reservation(Base):
    """Quantities held for a customs declaration until confirmed, released or expired."""

    __tablename__ = "endorsement_reservations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reservation_id: Mapped[str] = mapped_column(String(64), unique=True)
    permit_id: Mapped[int] = mapped_column(Integer)
    side: Mapped[str] = mapped_column(String(8))
    party: Mapped[str] = mapped_column(String(8))
    declaration_reference: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(150))
    closed_at: Mapped[datetime | None]
    closed_by: Mapped[str | None] = mapped_column(String(150))

    lines: Mapped[list[ReservationLine]] = relationship(
        back_populates="reservation", order_by="ReservationLine.id", lazy="selectin"
    )

    __table_args__ = (Index("ix_endorsement_reservations_permit", "permit_id", "status"),)

    def status_at(self, moment: datetime) -> ReservationStatus:
        """The status as seen at ``moment``: an unconfirmed hold past its expiry is expired."""
        if self.status == ReservationStatus.ACTIVE and self.expires_at <= moment:
            return ReservationStatus.EXPIRED
        return ReservationStatus(self.status)


class ReservationLine(Base):
    """The quantity held on one permit line."""

    __tablename__ = "endorsement_reservation_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reservation_pk: Mapped[int] = mapped_column(
        ForeignKey(
            "endorsement_reservations.id", name="fk_endorsement_reservation_lines_reservation"
        )
    )
    permit_line_id: Mapped[int] = mapped_column(Integer)
    quantity: Mapped[Decimal] = mapped_column(Numeric(20, 6))
    unit: Mapped[str] = mapped_column(String(16))

    reservation: Mapped[Reservation] = relationship(back_populates="lines")

    __table_args__ = (UniqueConstraint("reservation_pk", "permit_line_id"),)


class IdempotencyRecord(Base):
    """A customs POST sent with an ``Idempotency-Key``: what it was and what it answered.

    Unique per Party, operation and key, so two requests with one key never both create. The
    row is written first in the transaction of the change it guards, ``resource_id`` and
    ``answer`` before that transaction commits, so no other transaction sees them empty.
    """

    __tablename__ = "endorsement_idempotency_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    party: Mapped[str] = mapped_column(String(8))
    operation: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(255))
    # SHA-256 of the method, path and canonical body: the same key with another request is
    # refused, not answered with this one's result.
    fingerprint: Mapped[str] = mapped_column(String(64))
    # The reservation or endorsement id the request created, and its answer (JSON) as sent.
    resource_id: Mapped[str | None] = mapped_column(String(64))
    answer: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("party", "operation", "key"),
        Index("ix_endorsement_idempotency_keys_expires_at", "expires_at"),
    )
