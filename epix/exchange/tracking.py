"""Tracking: the sender sees how far each of its messages got, with the node's receipts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from epix.auth.principal import Principal
from epix.delivery.models import OutboxMessage, OutboxState
from epix.delivery.outbox import progress
from epix.errors import EpixError
from epix.exchange.models import Message, Receipt
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


def track(session: Session, *, message_id: str, principal: Principal) -> dict[str, Any]:
    """A message of the caller's own Party; someone else's looks like a missing one."""
    message = find_message(session, principal.party, message_id)
    if message is None:
        raise EpixError.of(
            "EPIX-REQ-005",
            f"No message {message_id!r} sent by {principal.party}.",
            f"/v1/messages/{message_id}",
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
