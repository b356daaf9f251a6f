"""A row past its give-up time fails even while its peer's circuit is open.

While a peer is down its circuit lets one probe through per cool-down; every other row claimed
meanwhile was handed back untried, and only a tried row ever compared its next attempt with its
give-up time. So a row could stay pending long past its give-up time (until its own turn as
the probe came: one row per cool-down), invisible to ``state=failed`` listings, the sender's
``delivery.failed`` webhook and ``epix outbox resend``.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from epix.db import Database
from epix.db.base import utcnow
from epix.delivery import peers
from epix.delivery.local import ExchangeInbox
from epix.delivery.models import OutboxMessage, OutboxState
from epix.delivery.outbox import DEFAULT_GIVE_UP_SECONDS, peer_key_for
from epix.delivery.worker import Worker
from tests.delivery.helpers import (
    PEER_PARTY,
    Peer,
    PeerState,
    enqueue_endorsements,
    peer_identity,
    register_peer,
    sender_settings,
)


def test_rows_past_give_up_fail_while_the_peers_circuit_is_open(
    sqlite_database: Database, tmp_path: Path
) -> None:
    down = Peer(PeerState(identity=peer_identity()))  # never started: connections refused
    register_peer(sqlite_database, endpoint=down.url, identity=peer_identity())
    enqueue_endorsements(sqlite_database, 10)
    later = utcnow() + timedelta(seconds=DEFAULT_GIVE_UP_SECONDS + 60)
    clock = [later]
    settings = sender_settings(tmp_path)
    worker = Worker(
        sqlite_database,
        settings,
        local_inbox=ExchangeInbox(),
        verifier=peers.RegistryReceiptVerifier(),
        directory=peers.RegistryDirectory(),
        clock=lambda: clock[0],
    )
    peer = peer_key_for(PEER_PARTY, None)
    for _ in range(settings.outbox_circuit_failures):  # the peer has been failing: open
        worker.breaker.record_failure(peer, later)
    try:
        for _ in range(2):  # two cool-downs: two probes
            clock[0] += timedelta(seconds=settings.outbox_circuit_cooldown_seconds * 2)
            worker.run_once()
    finally:
        worker.close()
    with sqlite_database.read() as session:
        rows = session.scalars(select(OutboxMessage)).all()
        assert [row.state for row in rows] == [OutboxState.FAILED] * 10
        assert all(row.last_error_code is not None for row in rows)
        assert all(row.failed_at is not None for row in rows)
