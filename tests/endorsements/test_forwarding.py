"""The endorsement, its outbox row and its audit event commit together or not at all."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from epix.audit.models import AuditEvent
from epix.db import Database
from epix.delivery.models import OutboxMessage
from epix.endorsements import service
from epix.endorsements.document import Side
from epix.endorsements.models import Endorsement
from epix.endorsements.service import Signer
from epix.exchange.models import Permit
from tests.endorsements.conftest import border, customs, lines, store_permit


class Boom(Exception):
    pass


def _endorse(session: Session, number: str, signer: Signer) -> service.SignedEndorsement:
    return service.endorse(
        session,
        issuing_party="XA",
        number=number,
        side=Side.IMPORT,
        details=border(),
        lines=lines(("1", "5", "PCS")),
        declaration_reference=None,
        signer=signer,
        signed_by="authority",
        actor=customs("XB"),
    )


def _count(database: Database, model: type[object]) -> int:
    with database.unit_of_work() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_endorsement_is_queued_for_the_issuing_party_with_an_audit_event(
    database: Database, signer: Signer
) -> None:
    permit = store_permit(database)
    with database.unit_of_work() as session:
        result = _endorse(session, permit.number, signer)
    with database.unit_of_work() as session:
        row = session.scalars(select(OutboxMessage)).one()
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "endorsement.record")
        ).one()
        stored = session.get(Permit, permit.id)
    assert row.kind == "endorsement"
    assert row.destination_party == "XA"
    assert row.sender_party == "XB"
    assert row.message_id == result.endorsement.endorsement_id
    assert row.payload == result.document
    assert event.message_id == result.endorsement.endorsement_id
    assert event.permit_number == permit.number
    assert event.payload_sha256 == result.endorsement.document_sha256
    assert stored is not None and stored.status == "used"


def test_rollback_leaves_neither_endorsement_nor_outbox_row(
    database: Database, signer: Signer
) -> None:
    permit = store_permit(database)
    with pytest.raises(Boom), database.unit_of_work() as session:
        _endorse(session, permit.number, signer)
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 1
        raise Boom
    assert _count(database, OutboxMessage) == 0
    assert _count(database, Endorsement) == 0
    with database.unit_of_work() as session:
        stored = session.get(Permit, permit.id)
        assert stored is not None and stored.status == "issued"
    # Nothing was consumed: the endorsement can still be made.
    with database.unit_of_work() as session:
        _endorse(session, permit.number, signer)
    assert _count(database, OutboxMessage) == 1


def test_an_export_endorsement_also_goes_to_the_importing_party_in_the_permits_order(
    database: Database, signer: Signer
) -> None:
    """The importer's node keeps its own ledger: without the export endorsement it held an
    import inspection to the permitted quantity, not to what was exported."""
    permit = store_permit(database)
    with database.unit_of_work() as session:
        result = service.endorse(
            session,
            issuing_party="XA",
            number=permit.number,
            side=Side.EXPORT,
            details=border("XAABC"),
            lines=lines(("1", "5", "PCS")),
            declaration_reference=None,
            signer=signer,
            signed_by="authority",
            actor=customs("XA"),
        )
    with database.unit_of_work() as session:
        rows = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        endorsement_rows = [row for row in rows if row.kind == "endorsement"]
    assert [row.destination_party for row in endorsement_rows] == ["XA", "XB"]
    assert {row.message_id for row in endorsement_rows} == {result.endorsement.endorsement_id}
    assert all(row.payload == result.document for row in endorsement_rows)
    assert all(row.sender_party == "XA" for row in endorsement_rows)
    assert len({row.order_key for row in endorsement_rows}) == 1


def test_an_import_inspection_goes_to_the_issuer_only(database: Database, signer: Signer) -> None:
    permit = store_permit(database)
    with database.unit_of_work() as session:
        _endorse(session, permit.number, signer)
    with database.unit_of_work() as session:
        rows = session.scalars(select(OutboxMessage)).all()
    assert [row.destination_party for row in rows] == ["XA"]
