"""Every outbound HTTP request ends within EPIX_OUTBOUND_DEADLINE_SECONDS, however slowly the
far end sends its status line, headers or body.

httpx's timeouts bound each socket read: a far end sending one byte every 0.2 s resets them
at every byte. The far end here is a raw socket server on 127.0.0.1 that does exactly that;
each call runs on a thread the test gives a bounded time, so code without a deadline fails
here instead of hanging the suite.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal, TypeVar

import pytest
from sqlalchemy import select

from epix.cli.registry import read_source
from epix.db import Database
from epix.delivery import webhooks
from epix.delivery.models import OutboxMessage, OutboxState
from epix.delivery.webhooks import publish_event, webhook_key
from epix.delivery.worker import Result, default_worker
from epix.errors import EpixError
from epix.registry.follower import RegistryFollower
from epix.settings import get_settings
from tests.delivery.helpers import (
    enqueue_endorsements,
    peer_identity,
    register_peer,
    sender_settings,
)
from tests.pki import make_identity

DEADLINE = 1.0
DRIP_SECONDS = 0.2
GUARD_SECONDS = 10.0  # far past the deadline, far short of an answer dripped to its end
# What the rest of a delivery may take beside the cut-off (claim, records, audit) on a loaded
# two-core machine: one second was seen exceeded in CI (2.7 s in all).
SLACK_SECONDS = 4.0

Part = Literal["headers", "body"]
T = TypeVar("T")


class DripServer:
    """Answers every request one byte per DRIP_SECONDS: from the status line on ("headers"),
    or after complete headers that announce a 100 kB body ("body"). Closing it ends every
    connection, so a client that never gave up is released when the test ends."""

    def __init__(self, part: Part) -> None:
        self.part = part
        self.stop = threading.Event()
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                connection, _address = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._drip, args=(connection,), daemon=True).start()

    def _drip(self, connection: socket.socket) -> None:
        with connection:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = connection.recv(65536)
                if not chunk:
                    return
                request += chunk
            if self.part == "headers":
                answer = b"HTTP/1.1 200 OK\r\nX-Drip: " + b"a" * 100_000
            else:
                connection.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\n"
                    b"Content-Length: 100000\r\n\r\n"
                )
                answer = b"x" * 100_000
            try:
                for byte in answer:
                    if self.stop.wait(DRIP_SECONDS):
                        return
                    connection.sendall(bytes([byte]))
            except OSError:  # the client gave up
                return

    def close(self) -> None:
        self.stop.set()
        self._listener.close()


@pytest.fixture(params=["headers", "body"])
def drip(request: pytest.FixtureRequest) -> Iterator[DripServer]:
    server = DripServer(request.param)
    yield server
    server.close()


def within_guard(call: Callable[[], T]) -> tuple[T, float]:
    """``call()``'s result and how long it took; fails if it is still running after
    GUARD_SECONDS (its thread is a daemon, released when the drip server closes)."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # handed to the test below
            failure.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(GUARD_SECONDS)
    elapsed = time.monotonic() - started
    assert not thread.is_alive(), f"still waiting for the far end after {elapsed:.1f} s"
    if failure:
        raise failure[0]
    return outcome[0], elapsed


def _only_row(database: Database) -> OutboxMessage:
    with database.unit_of_work() as session:
        return session.scalars(select(OutboxMessage)).one()


def _assert_cut_off_and_retryable(row: OutboxMessage) -> None:
    assert row.state == OutboxState.PENDING  # retried with backoff, not given up
    assert row.lease_owner is None
    assert row.attempts == 1
    assert row.last_error_code == "EPIX-DLV-011"
    assert row.last_error is not None
    assert f"within the {DEADLINE:g} s deadline" in row.last_error


def test_a_peer_dripping_its_answer_is_cut_off_at_the_deadline_and_retried(
    sqlite_database: Database, drip: DripServer, tmp_path: Path
) -> None:
    settings = sender_settings(tmp_path, outbound_deadline_seconds=DEADLINE)
    identity = peer_identity()
    register_peer(sqlite_database, endpoint=drip.url, identity=identity)
    enqueue_endorsements(sqlite_database, 1)
    worker = default_worker(sqlite_database, settings)
    try:
        (job,) = worker.claim()
        result, elapsed = within_guard(lambda: worker.process(job))
    finally:
        worker.close()
    assert result == Result.RETRY
    assert drip.connections == 1
    assert elapsed < DEADLINE + SLACK_SECONDS
    _assert_cut_off_and_retryable(_only_row(sqlite_database))


def test_a_webhook_receiver_dripping_its_answer_is_cut_off_at_the_deadline_and_retried(
    sqlite_database: Database, drip: DripServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the connection that judges the webhook's address public (loopback counts as
    public here: the receiver can only listen there)."""
    settings = sender_settings(tmp_path, outbound_deadline_seconds=DEADLINE)
    monkeypatch.setattr(webhooks, "_is_internal", lambda address: address != "127.0.0.1")
    with sqlite_database.unit_of_work() as session:
        webhooks.create_subscription(
            session,
            party="XA",
            url=f"{drip.url}/hook",
            events=["status.changed"],
            created_by="ma-xa",
            node_base_url=settings.node_base_url,
            secret_key=webhook_key(settings),
        )
        publish_event(session, party="XA", event="status.changed", event_id="p-1", data={})
    worker = default_worker(sqlite_database, settings)
    assert worker.webhook_client is not worker.client  # the public-address connection
    try:
        claimed, elapsed = within_guard(worker.run_once)
    finally:
        worker.close()
    assert claimed == 1
    assert drip.connections == 1
    assert elapsed < DEADLINE + SLACK_SECONDS
    _assert_cut_off_and_retryable(_only_row(sqlite_database))


def test_a_registry_source_dripping_its_document_is_unreachable_after_the_deadline(
    sqlite_database: Database, drip: DripServer
) -> None:
    follower = RegistryFollower(
        sqlite_database,
        source_url=f"{drip.url}/v1/registry",
        # A real certificate: the follower reads its anchor before it fetches anything.
        anchor_pem=make_identity(
            "CITES Secretariat (TEST)", party="XA", kind="ec", size=256
        ).cert_pem,
        deadline_seconds=DEADLINE,
    )
    started = time.monotonic()
    try:
        with pytest.raises(EpixError) as refused:
            within_guard(follower.refresh)
    finally:
        follower.client.close()
    assert time.monotonic() - started < DEADLINE + SLACK_SECONDS
    (finding,) = refused.value.findings
    assert finding.code == "EPIX-REG-009"  # no copy held yet
    assert f"within the {DEADLINE:g} s deadline" in finding.message


def test_epix_verify_registry_url_gives_up_at_the_deadline(
    drip: DripServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``epix verify --registry URL`` and ``epix registry import URL`` fetch with
    ``read_source``."""
    monkeypatch.setenv("EPIX_OUTBOUND_DEADLINE_SECONDS", str(DEADLINE))
    get_settings.cache_clear()
    started = time.monotonic()
    try:
        with pytest.raises(EpixError) as refused:
            within_guard(lambda: read_source(f"{drip.url}/v1/registry"))
    finally:
        get_settings.cache_clear()
    assert time.monotonic() - started < DEADLINE + SLACK_SECONDS
    (finding,) = refused.value.findings
    assert finding.code == "EPIX-REG-009"
    assert f"within the {DEADLINE:g} s deadline" in finding.message
