"""``epix worker`` as its own process, killed with SIGKILL in the middle of 500 deliveries:
after a restart every row is delivered, and completed exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from epix.audit.models import AuditEvent
from epix.db import Database
from epix.delivery import outbox
from epix.delivery.models import OutboxMessage, OutboxState
from tests.conftest import REPO_ROOT
from tests.delivery.helpers import (
    PEER_API_KEY,
    PEER_PARTY,
    Peer,
    PeerState,
    peer_identity,
    register_peer,
    states,
)

ROWS = 500
BATCH = 20


def _start_worker(database_url: str, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "EPIX_DATABASE_URL": database_url,
        "EPIX_DATA_DIR": str(data_dir),
        "EPIX_NODE_MODE": "party",
        "EPIX_NODE_PARTY": "XA",
        "EPIX_NODE_BASE_URL": "http://127.0.0.1:9",
        "EPIX_PEER_API_KEYS": json.dumps({PEER_PARTY: PEER_API_KEY}),
        "EPIX_OUTBOX_LEASE_SECONDS": "3",
        "EPIX_OUTBOX_HTTP_TIMEOUT_SECONDS": "1",
        "EPIX_OUTBOUND_DEADLINE_SECONDS": "2",
        "EPIX_OUTBOX_POLL_SECONDS": "0.05",
        "EPIX_OUTBOX_BATCH_SIZE": str(BATCH),
        "EPIX_OUTBOX_CONCURRENCY": "4",
        "EPIX_OUTBOX_BASE_DELAY_SECONDS": "0.05",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "epix.cli", "worker"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait(condition: object, timeout: float, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.slow
def test_worker_killed_mid_run_then_restarted_delivers_every_row_exactly_once(
    sqlite_database: Database, tmp_path: Path
) -> None:
    identity = peer_identity()
    peer = Peer(PeerState(identity=identity)).start()
    workers: list[subprocess.Popen[bytes]] = []
    try:
        register_peer(sqlite_database, endpoint=peer.url, identity=identity)
        with sqlite_database.unit_of_work() as session:
            for i in range(ROWS):
                outbox.enqueue(
                    session,
                    kind="endorsement",
                    destination_party=PEER_PARTY,
                    payload=f"<Endorsement n='{i}'/>".encode(),
                    message_id=f"end-{i:04d}",
                    sender_party="XA",
                )
        url = sqlite_database.url
        workers.append(_start_worker(url, tmp_path))
        _wait(lambda: peer.state.effects >= ROWS // 3, 120, "the first third to arrive")
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait(10)
        at_kill = states(sqlite_database)
        assert at_kill.get("pending", 0) > 0, "the kill came too late to test anything"

        workers.append(_start_worker(url, tmp_path))
        _wait(lambda: states(sqlite_database) == {"delivered": ROWS}, 180, "all rows delivered")
        workers[1].send_signal(signal.SIGTERM)
        assert workers[1].wait(30) == 0  # a clean stop
    finally:
        for process in workers:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        peer.stop()

    assert peer.state.effects == ROWS
    duplicates = sum(count - 1 for count in peer.state.requests.values())
    # Only rows in flight at the kill may reach the peer twice (and the peer is idempotent).
    assert duplicates <= BATCH
    with sqlite_database.unit_of_work() as session:
        rows = session.scalars(select(OutboxMessage)).all()
        assert all(row.receipt == peer.state.receipts[row.message_id] for row in rows)
        assert {row.state for row in rows} == {OutboxState.DELIVERED.value}
        completions = session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "message.transmitted")
        )
        assert completions == ROWS
