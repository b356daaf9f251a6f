"""A fault of the sending node's own during a delivery fails the row; it never wedges it.

The worker caught what a peer or the network can do (no answer, an error status, a bad
receipt), but anything else raised out of the delivery (a bug, a library raising what it
should not) left the row claimed and untouched: taken again at every lease for ever, never
given up nor audited, and a circuit probe it held stayed taken, so nothing more went to that
peer. The faults here are injected (a transport and a receipt verifier that raise), standing
for the ones nobody has found yet.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import select

from epix.db import Database
from epix.db.base import utcnow
from epix.delivery import peers
from epix.delivery.local import ExchangeInbox
from epix.delivery.models import OutboxMessage, OutboxState
from epix.delivery.outbox import peer_key_for
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


class _FaultyVerifier(peers.RegistryReceiptVerifier):
    def verify(self, *args: object, **kwargs: object) -> list[object]:  # type: ignore[override]
        raise RuntimeError("a fault in the receipt check")


def _raise_fault(request: httpx.Request) -> httpx.Response:
    raise RuntimeError("a fault below the HTTP client")


def _worker(database: Database, tmp_path: Path, verifier: peers.ReceiptVerifier) -> Worker:
    return Worker(
        database,
        sender_settings(tmp_path),
        local_inbox=ExchangeInbox(),
        verifier=verifier,
        directory=peers.RegistryDirectory(),
    )


def _the_row(database: Database) -> OutboxMessage:
    with database.read() as session:
        return session.scalars(select(OutboxMessage)).one()


def test_a_fault_while_sending_fails_the_row_and_frees_the_peers_probe(
    sqlite_database: Database, tmp_path: Path
) -> None:
    register_peer(sqlite_database, endpoint=Peer(PeerState()).url, identity=peer_identity())
    enqueue_endorsements(sqlite_database, 1)
    worker = _worker(sqlite_database, tmp_path, peers.RegistryReceiptVerifier())
    worker.client = httpx.Client(transport=httpx.MockTransport(_raise_fault))
    peer = peer_key_for(PEER_PARTY, None)
    opened = utcnow() - timedelta(seconds=worker.settings.outbox_circuit_cooldown_seconds + 1)
    for _ in range(worker.settings.outbox_circuit_failures):  # open; its cool-down is over
        worker.breaker.record_failure(peer, opened)
    try:
        assert worker.run_once() == 1  # the row goes as the circuit's one probe
    finally:
        worker.close()
    row = _the_row(sqlite_database)
    assert (row.state, row.attempts, row.last_error_code) == (
        OutboxState.PENDING,
        1,
        "EPIX-DLV-001",
    )
    assert row.last_error == "RuntimeError" and row.lease_owner is None
    assert worker.breaker.allow(peer, utcnow()) is None  # the next probe may go


def test_a_fault_in_the_receipt_check_fails_the_row(
    sqlite_database: Database, tmp_path: Path
) -> None:
    identity = peer_identity()
    peer = Peer(PeerState(identity=identity)).start()
    register_peer(sqlite_database, endpoint=peer.url, identity=identity)
    enqueue_endorsements(sqlite_database, 1)
    worker = _worker(sqlite_database, tmp_path, _FaultyVerifier())
    try:
        assert worker.run_once() == 1
    finally:
        worker.close()
        peer.stop()
    row = _the_row(sqlite_database)
    assert (row.state, row.last_error_code, row.last_error) == (
        OutboxState.PENDING,
        "EPIX-DLV-001",
        "RuntimeError",
    )
    assert row.lease_owner is None
