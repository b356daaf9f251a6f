"""Reservations hold quantities against a declaration until confirmed, released or expired."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from epix.audit.models import AuditEvent
from epix.db import Database, utcnow
from epix.endorsements import service
from epix.endorsements.document import Side
from epix.endorsements.ledger import ledger
from epix.endorsements.models import Reservation, ReservationStatus
from epix.endorsements.service import LineInput, Signer
from epix.errors import EpixError
from epix.exchange.models import Permit
from tests.endorsements.conftest import MakePermit, StoredPermit, border, customs, lines

HOUR = timedelta(hours=1)


def reserve(
    db: Database,
    permit: StoredPermit,
    items: list[LineInput],
    *,
    party: str = "XB",
    declaration: str = "MRN-1",
) -> Reservation:
    with db.unit_of_work() as session:
        return service.reserve(
            session,
            issuing_party=permit.issuing_party,
            number=permit.number,
            side=Side.IMPORT,
            declaration_reference=declaration,
            lines=items,
            ttl=HOUR,
            actor=customs(party),
        )


def balances(db: Database, permit: StoredPermit) -> dict[str, tuple[Decimal, Decimal, Decimal]]:
    with db.unit_of_work() as session:
        row = session.get(Permit, permit.id)
        assert row is not None
        return {b.line_id: (b.reserved, b.used, b.remaining) for b in ledger(session, row)}


def codes(error: pytest.ExceptionInfo[EpixError]) -> list[str]:
    return [finding.code for finding in error.value.findings]


def test_reservation_holds_quantity_until_released(db: Database, make_permit: MakePermit) -> None:
    permit = make_permit()
    held = reserve(db, permit, lines(("1", "6", "PCS")))
    assert balances(db, permit)["1"] == (Decimal(6), Decimal(0), Decimal(4))
    with pytest.raises(EpixError) as error:
        reserve(db, permit, lines(("1", "5", "PCS")), declaration="MRN-2")
    assert codes(error) == ["EPIX-QTY-001"]
    with db.unit_of_work() as session:
        released = service.release(
            session,
            issuing_party="XA",
            number=permit.number,
            reservation_id=held.reservation_id,
            actor=customs("XB"),
        )
        assert released.status == ReservationStatus.RELEASED
    assert balances(db, permit)["1"] == (Decimal(0), Decimal(0), Decimal(10))
    reserve(db, permit, lines(("1", "10", "PCS")), declaration="MRN-2")


def test_confirm_turns_the_reservation_into_the_endorsement(
    db: Database, make_permit: MakePermit, signer: Signer
) -> None:
    permit = make_permit()
    held = reserve(db, permit, lines(("1", "6", "PCS"), ("2", "2", "KGM")))
    other = reserve(db, permit, lines(("1", "1", "PCS")), declaration="MRN-2")
    with db.unit_of_work() as session:
        result = service.confirm(
            session,
            issuing_party="XA",
            number=permit.number,
            reservation_id=held.reservation_id,
            details=border(),
            lines=None,
            signer=signer,
            signed_by="authority",
            actor=customs("XB"),
        )
        statuses = {r.reservation_id: r.status for r in session.scalars(select(Reservation)).all()}
    assert sorted(line.quantity for line in result.endorsement.lines) == [2, 6]
    assert result.endorsement.declaration_reference == "MRN-1"
    # The other hold on the now closed import side lapses with the endorsement.
    assert statuses == {held.reservation_id: "confirmed", other.reservation_id: "released"}
    assert balances(db, permit)["1"] == (Decimal(0), Decimal(6), Decimal(0))


def test_confirm_may_record_more_than_reserved_while_it_fits(
    db: Database, make_permit: MakePermit, signer: Signer
) -> None:
    permit = make_permit()
    held = reserve(db, permit, lines(("1", "6", "PCS")))
    reserve(db, permit, lines(("1", "3", "PCS")), declaration="MRN-2")

    def confirm(quantity: str) -> service.SignedEndorsement:
        with db.unit_of_work() as session:
            return service.confirm(
                session,
                issuing_party="XA",
                number=permit.number,
                reservation_id=held.reservation_id,
                details=border(),
                lines=lines(("1", quantity, "PCS")),
                signer=signer,
                signed_by="authority",
                actor=customs("XB"),
            )

    # 10 permitted, 3 held by MRN-2: this reservation's own 6 count as free, so 7 fits, 8 not.
    with pytest.raises(EpixError) as error:
        confirm("8")
    assert codes(error) == ["EPIX-QTY-001"]
    assert confirm("7").endorsement.lines[0].quantity == 7


def test_closed_or_foreign_reservation_cannot_be_confirmed(
    db: Database, make_permit: MakePermit, signer: Signer
) -> None:
    permit = make_permit()
    held = reserve(db, permit, lines(("1", "2", "PCS")))
    with db.unit_of_work() as session:
        service.release(
            session,
            issuing_party="XA",
            number=permit.number,
            reservation_id=held.reservation_id,
            actor=customs("XB"),
        )
    for actor, code in ((customs("XB"), "EPIX-QTY-008"), (customs("XC"), "EPIX-QTY-005")):
        with pytest.raises(EpixError) as error, db.unit_of_work() as session:
            service.release(
                session,
                issuing_party="XA",
                number=permit.number,
                reservation_id=held.reservation_id,
                actor=actor,
            )
        assert codes(error) == [code]


def test_expired_reservation_no_longer_counts_and_cannot_be_confirmed(
    db: Database, make_permit: MakePermit, signer: Signer
) -> None:
    permit = make_permit()
    held = reserve(db, permit, lines(("1", "10", "PCS")))
    with pytest.raises(EpixError):
        reserve(db, permit, lines(("1", "1", "PCS")), declaration="MRN-2")
    # Time passes beyond the reservation's lifetime.
    with db.unit_of_work() as session:
        session.execute(
            update(Reservation)
            .where(Reservation.id == held.id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert balances(db, permit)["1"] == (Decimal(0), Decimal(0), Decimal(10))
    reserve(db, permit, lines(("1", "10", "PCS")), declaration="MRN-2")
    with pytest.raises(EpixError) as error, db.unit_of_work() as session:
        service.confirm(
            session,
            issuing_party="XA",
            number=permit.number,
            reservation_id=held.reservation_id,
            details=border(),
            lines=None,
            signer=signer,
            signed_by="authority",
            actor=customs("XB"),
        )
    assert codes(error) == ["EPIX-QTY-005"]
    with db.unit_of_work() as session:
        stored = session.get(Reservation, held.id)
        assert stored is not None and stored.status == ReservationStatus.EXPIRED
        expired_events = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "reservation.expire")
        ).all()
    assert [event.message_id for event in expired_events] == [held.reservation_id]


def test_reservation_on_a_cancelled_permit_is_refused(
    db: Database, make_permit: MakePermit
) -> None:
    permit = make_permit(status="cancelled")
    with pytest.raises(EpixError) as error:
        reserve(db, permit, lines(("1", "1", "PCS")))
    assert codes(error) == ["EPIX-STATE-003"]
