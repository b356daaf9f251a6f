"""A destination that hangs holds only its own delivery slots: the running worker claims a row
as soon as a slot frees, and gives one destination at most EPIX_OUTBOX_PEER_CONCURRENCY of them.

Before, the worker claimed a batch and waited for all of it, so a peer holding its answers until
the outbound deadline held up every other delivery of the batch (and of every batch after it).
The slow peer here is a real HTTP server on 127.0.0.1 that holds each answer far past the
deadline; the healthy destination is a real webhook receiver that answers at once.
"""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import select

from epix.db import Database
from epix.delivery import outbox, webhooks
from epix.delivery.models import OutboxKind, OutboxMessage, OutboxState
from epix.delivery.webhooks import publish_event, webhook_key
from epix.delivery.worker import start_worker_thread
from tests.delivery.helpers import (
    PEER_PARTY,
    Peer,
    PeerState,
    enqueue_endorsements,
    peer_identity,
    register_peer,
    sender_settings,
)

DEADLINE = 4.0  # the slow peer is cut off after this; the healthy rows must be done before
HOLD = 60.0  # how long the slow peer would hold each answer
SLOW_ROWS = 8  # more than the worker's slots: the old worker filled all of them with these
HEALTHY_ROWS = 10


def _rows(database: Database, kind: OutboxKind) -> list[OutboxMessage]:
    with database.unit_of_work() as session:
        query = select(OutboxMessage).where(OutboxMessage.kind == kind.value)
        return list(session.scalars(query.order_by(OutboxMessage.id)))


def test_a_hanging_peer_does_not_hold_up_deliveries_to_a_healthy_destination(
    database: Database, tmp_path: Path
) -> None:
    identity = peer_identity()
    slow = Peer(PeerState(identity=identity, delay_seconds=HOLD)).start()
    healthy = Peer(PeerState()).start()
    try:
        settings = sender_settings(
            tmp_path,
            outbound_deadline_seconds=DEADLINE,
            outbox_http_timeout_seconds=DEADLINE * 2,  # the deadline, not a read, cuts it off
            webhook_allow_private_addresses=True,
        )
        register_peer(database, endpoint=slow.url, identity=identity)
        enqueue_endorsements(database, SLOW_ROWS)  # queued first: they head the queue
        with database.unit_of_work() as session:
            created = webhooks.create_subscription(
                session,
                party="XA",
                url=f"{healthy.url}/hook",
                events=["status.changed"],
                created_by="ma-xa",
                node_base_url=settings.node_base_url,
                secret_key=webhook_key(settings),
                allow_private_addresses=True,
            )
            healthy.state.webhook_secret = created.secret
            for n in range(HEALTHY_ROWS):
                publish_event(
                    session, party="XA", event="status.changed", event_id=f"e-{n}", data={}
                )

        handle = start_worker_thread(database, settings)
        started = time.monotonic()
        try:
            while any(
                r.state != OutboxState.DELIVERED for r in _rows(database, OutboxKind.WEBHOOK)
            ):
                assert time.monotonic() - started < 3 * DEADLINE, "healthy rows never delivered"
                time.sleep(0.05)
            healthy_done = time.monotonic() - started
            slow_while_hanging = _rows(database, OutboxKind.ENDORSEMENT)
        finally:
            handle.stop()
        stopped = time.monotonic() - started

        # Before: about 2 x DEADLINE (two waves of slow rows filled all four slots first).
        assert healthy_done < DEADLINE, f"healthy rows took {healthy_done:.1f} s"
        assert healthy.state.effects == HEALTHY_ROWS
        assert healthy.state.bad_signatures == 0
        # The slow peer was still holding its answers, with no more rows than its share.
        assert all(r.state == OutboxState.PENDING for r in slow_while_hanging)
        leased = [r for r in slow_while_hanging if r.lease_owner is not None]
        assert 1 <= len(leased) <= settings.outbox_peer_concurrency
        assert all(r.attempts == 0 for r in slow_while_hanging if r.lease_owner is None)

        # A graceful stop let the deliveries in flight end (cut off at the deadline) and
        # recorded them as retryable failures: no row is left leased.
        assert stopped < 3 * DEADLINE
        after_stop = _rows(database, OutboxKind.ENDORSEMENT)
        assert all(r.state == OutboxState.PENDING and r.lease_owner is None for r in after_stop)
        cut_off = [r for r in after_stop if r.attempts]
        assert [r.id for r in cut_off] == [r.id for r in leased]
        assert {r.last_error_code for r in cut_off} == {"EPIX-DLV-011"}
    finally:
        slow.stop()
        healthy.stop()


def test_the_running_worker_still_sends_the_messages_about_one_permit_in_queue_order(
    database: Database, tmp_path: Path
) -> None:
    """Free slots are filled at once, but a permit's later message is claimed only once the
    earlier one is delivered: the peer sees them in the order they were queued."""
    identity = peer_identity()
    peer = Peer(PeerState(identity=identity)).start()
    try:
        settings = sender_settings(tmp_path)
        register_peer(database, endpoint=peer.url, identity=identity)
        ids = [f"permit-msg-{n}" for n in range(6)]
        with database.unit_of_work() as session:
            for message_id in ids:
                outbox.enqueue(
                    session,
                    kind="endorsement",
                    destination_party=PEER_PARTY,
                    payload=f"<Endorsement id='{message_id}'/>".encode(),
                    message_id=message_id,
                    sender_party="XA",
                    order_key=outbox.permit_order_key("XA", "P-1"),
                )
        handle = start_worker_thread(database, settings)
        started = time.monotonic()
        try:
            while any(
                r.state != OutboxState.DELIVERED for r in _rows(database, OutboxKind.ENDORSEMENT)
            ):
                assert time.monotonic() - started < 30, "not delivered"
                time.sleep(0.05)
        finally:
            handle.stop()
        assert peer.state.arrivals == ids
    finally:
        peer.stop()
