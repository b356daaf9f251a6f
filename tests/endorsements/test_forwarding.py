"""The endorsement, its outbox row and its audit event commit together or not at all."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from epix.audit.models import AuditEvent
from epix.db import Database, utcnow
from epix.delivery import outbox
from epix.delivery.models import OutboxMessage
from epix.endorsements import service
from epix.endorsements.document import Side
from epix.endorsements.models import Endorsement
from epix.endorsements.service import Signer
from epix.errors import Finding
from epix.exchange.models import Permit
from epix.exchange.receipts import ACCEPTED_WITH_WARNINGS, ReceiptFacts, receipt_xml
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


def test_customs_see_how_far_their_endorsement_got_and_what_the_far_end_said(
    database: Database, signer: Signer
) -> None:
    """A delivery given up, or a receipt saying the issuer's ledger did not record the
    endorsement (EPIX-QTY-011), was visible only to node admins in the outbox; the
    endorsement itself now says it."""
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
        assert [(f["to"], f["state"]) for f in service.forwarding(session, result.endorsement)] == [
            ("XA", "pending"),
            ("XB", "pending"),
        ]
    with database.unit_of_work() as session:
        claims = {
            claim.destination_party: claim
            for claim in outbox.claim_due(session, owner="test", lease_seconds=60, limit=10)
            if claim.kind == "endorsement"
        }
    receipt = signer(
        receipt_xml(
            ReceiptFacts(
                sha256=result.endorsement.document_sha256,
                received_at=utcnow(),
                status=ACCEPTED_WITH_WARNINGS,
                node_party="XA",
                findings=[Finding("EPIX-QTY-011", "The ledger did not record it.", "/")],
                message_id=result.endorsement.endorsement_id,
            )
        )
    )
    with database.unit_of_work() as session:
        outbox.mark_delivered(session, claims["XA"], receipt=receipt, response_status=201)
        outbox.mark_attempt_failed(
            session,
            claims["XB"],
            code="EPIX-DLV-006",
            reason="HTTP 422 EPIX-MSG-009",
            retry_at=None,
        )
    with database.unit_of_work() as session:
        endorsement = session.scalars(select(Endorsement)).one()
        described = service.describe_endorsement(session, endorsement)
    assert described["forwarding"] == [
        {
            "to": "XA",
            "state": "delivered",
            "attempts": 1,
            "error_code": None,
            "error": None,
            "next_attempt_at": None,
            "give_up_at": None,
            "receipt_status": "accepted_with_warnings",
            "receipt_codes": ["EPIX-QTY-011"],
        },
        {
            "to": "XB",
            "state": "failed",
            "attempts": 1,
            "error_code": "EPIX-DLV-006",
            "error": "HTTP 422 EPIX-MSG-009",
            "next_attempt_at": None,
            "give_up_at": None,
            "receipt_status": None,
            "receipt_codes": [],
        },
    ]
