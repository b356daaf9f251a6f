"""Tracking: the sender sees how far each of its messages got, with the node's receipts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from epix.audit.context import RequestContext
from epix.audit.service import record_event
from epix.auth.principal import Principal
from epix.delivery.models import OutboxMessage, OutboxState
from epix.delivery.outbox import progress
from epix.errors import EpixError
from epix.exchange.lookup import ACTION_LOOKUP
from epix.exchange.models import MESSAGE_ID_MAX_LENGTH, Message, Permit, Receipt
from epix.exchange.service import find_message


def _outbox_row(session: Session, message: Message) -> OutboxMessage | None:
    """The outbox row that carries the message to its recipient's node (none in hub mode)."""
    return session.scalar(
        select(OutboxMessage)
        .where(
            OutboxMessage.message_id == message.message_id,
            OutboxMessage.sender_party == message.sender_party,
            OutboxMessage.destination_party == message.recipient_party,
        )
        .order_by(OutboxMessage.id)
    )


def delivery_state(message: Message, row: OutboxMessage | None) -> tuple[str, str | None]:
    """pending, delivered, acknowledged or failed (with the reason), from the inbox or outbox."""
    if message.delivery_state != "pending":
        return message.delivery_state, message.delivery_detail
    if row is None or row.state == OutboxState.PENDING.value:
        return "pending", None
    if row.state == OutboxState.FAILED.value:
        return "failed", row.last_error
    return "delivered", None


def track(
    session: Session, *, message_id: str, principal: Principal, request: RequestContext | None
) -> dict[str, Any]:
    """A message of the caller's own Party; someone else's looks like a missing one. Audited
    as a lookup (refusals too; the caller commits them): it shows the message's receipts."""
    # An id longer than a message's is on file for no one, nor fits the audit row's column.
    on_file = message_id if len(message_id) <= MESSAGE_ID_MAX_LENGTH else None
    read: dict[str, object] = {"read": "message"}
    message = find_message(session, principal.party, message_id)
    if message is None:
        record_event(
            session,
            action=ACTION_LOOKUP,
            outcome="EPIX-REQ-005",
            actor=principal,
            party=principal.party,
            message_id=on_file,
            request=request,
            detail=read,
        )
        raise EpixError.of(
            "EPIX-REQ-005",
            f"No message {message_id!r} sent by {principal.party}.",
            f"/v1/messages/{message_id}",
        )
    permit = session.scalar(select(Permit).where(Permit.message_pk == message.id))
    record_event(
        session,
        action=ACTION_LOOKUP,
        outcome="ok",
        actor=principal,
        party=permit.issuing_party if permit else message.sender_party,
        permit_number=permit.number if permit else None,
        message_id=message.message_id,
        request=request,
        payload_sha256=message.sha256,
        detail=read,
        permit_valid_until=permit.valid_until.date() if permit and permit.valid_until else None,
    )
    row = _outbox_row(session, message) if message.delivery_state == "pending" else None
    state, detail = delivery_state(message, row)
    receipts = session.scalars(
        select(Receipt).where(Receipt.message_pk == message.id).order_by(Receipt.id)
    ).all()
    return {
        "message_id": message.message_id,
        "from": message.sender_party,
        "to": message.recipient_party,
        "document_type": message.document_type,
        "conversation_id": message.conversation_id,
        "sha256": message.sha256,
        "received_at": message.received_at.isoformat(),
        "status": message.status,
        "state": state,
        "state_detail": detail,
        # Its way to the recipient's node: the last refusal and when it is tried next.
        "forwarding": progress(row) if row is not None else None,
        "receipts": [
            {
                "status": receipt.status,
                "codes": receipt.codes.split(),
                "issued_at": receipt.issued_at.isoformat(),
                "xml": receipt.body.decode("utf-8"),
            }
            for receipt in receipts
        ],
    }
