"""On a hub the destination is the Party's inbox on this node: the inbox entry and the
"delivered" mark commit together, so even a frozen worker cannot deliver twice."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from epix.db import Database
from epix.db.base import utcnow
from epix.delivery import outbox
from epix.delivery.local import ExchangeInbox
from epix.delivery.models import OutboxMessage, OutboxState
from epix.delivery.peers import RegistryReceiptVerifier
from epix.delivery.worker import Result, Worker
from epix.exchange.models import InboxEntry
from epix.settings import NodeMode
from tests.delivery.helpers import sender_settings


def test_hub_delivers_into_the_inbox_exactly_once_despite_a_frozen_worker(
    database: Database, tmp_path: Path
) -> None:
    settings = sender_settings(tmp_path, node_mode=NodeMode.HUB)
    with database.unit_of_work() as session:
        outbox.enqueue(
            session,
            kind="endorsement",
            destination_party="XA",
            payload=b"<Endorsement/>",
            message_id="end-1",
            sender_party="XB",
        )
    skew = timedelta(seconds=settings.outbox_lease_seconds + 1)

    def worker(clock_skew: timedelta) -> Worker:
        return Worker(
            database,
            settings,
            local_inbox=ExchangeInbox(),
            verifier=RegistryReceiptVerifier(),
            clock=lambda: utcnow() + clock_skew,
        )

    frozen, other = worker(timedelta(0)), worker(skew)
    try:
        (job,) = frozen.claim()
        assert other.run_once() == 1
        assert frozen.process(job) is Result.LEASE_LOST
        assert other.run_once() == 0
    finally:
        frozen.close()
        other.close()
    with database.unit_of_work() as session:
        entries = session.scalars(select(InboxEntry)).all()
        assert [(e.recipient_party, e.kind, e.payload) for e in entries] == [
            ("XA", "endorsement", b"<Endorsement/>")
        ]
        row = session.scalars(select(OutboxMessage)).one()
        assert row.state == OutboxState.DELIVERED
