"""Delivery into an inbox on this node (a hub, or this node's own Party)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from epix.delivery.models import OutboxKind
from epix.delivery.outbox import Claim
from epix.delivery.webhooks import publish_event
from epix.exchange.inbox import deliver_to_inbox, put_notification
from epix.exchange.service import find_message

# The webhook event a Party's system gets when an outbox row of this kind reaches its inbox.
_EVENTS = {
    OutboxKind.ENDORSEMENT.value: "endorsement.received",
    OutboxKind.STATUS_CHANGE.value: "status.changed",
}


class ExchangeInbox:
    """Hands a claimed row to the exchange's inbox in the worker's completing transaction.

    A message the exchange already stored (same sender and message id) is linked into the
    inbox; anything produced on this node without a stored message (an endorsement, a status
    change, a notification) becomes an inbox entry carrying the exact payload bytes. Either
    way the Party's subscribed systems get the matching webhook event.
    """

    def deliver(self, session: Session, claim: Claim) -> None:
        message = find_message(session, claim.sender_party, claim.message_id)
        if message is not None:
            entry_id = deliver_to_inbox(session, party=claim.destination_party, message=message)
        else:
            origin = claim.sender_party or "this node"
            entry_id = put_notification(
                session,
                party=claim.destination_party,
                kind=claim.kind,
                subject=f"{claim.kind} {claim.message_id} from {origin}",
                payload=claim.payload,
                content_type=claim.content_type,
            ).id
        publish_event(
            session,
            party=claim.destination_party,
            event=_EVENTS.get(claim.kind, "message.received"),
            event_id=f"{claim.sender_party}:{claim.message_id}",
            data={
                "message_id": claim.message_id,
                "from": claim.sender_party,
                "document_type": claim.kind,
                "inbox_entry": entry_id,
            },
        )
