"""Real HTTP peers on 127.0.0.1 for the delivery tests, and the sending node's setup.

``Peer`` plays a remote EPIX node: it commits each message once per message id (its effect),
answers every copy with the node-signed receipt it issued the first time (idempotency), and can
be told to drop the answer after committing, to answer with an error, or to be down.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from epix.api.app import create_app
from epix.auth import service as auth_service
from epix.auth.principal import SECRETARIAT_PARTY, Principal, Role
from epix.db import Database
from epix.delivery import outbox
from epix.delivery.models import OutboxMessage, OutboxState
from epix.delivery.webhooks import SIGNATURE_HEADER, verify_webhook_signature
from epix.delivery.worker import default_worker
from epix.exchange.node_identity import NodeIdentity
from epix.exchange.receipts import ReceiptFacts, sign_receipt
from epix.registry import service as registry
from epix.settings import NodeMode, Settings
from tests.pki import Identity, make_identity

PEER_PARTY = "XB"
PEER_API_KEY = "epix_peerkeyforxa_0123456789abcdefghij"
SECRETARIAT = Principal(
    user_id=0,
    username="secretariat",
    party=SECRETARIAT_PARTY,
    authority=None,
    roles=frozenset({Role.SECRETARIAT}),
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PeerState:
    identity: Identity | None = None
    webhook_secret: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: Counter[str] = field(default_factory=Counter)
    receipts: dict[str, bytes] = field(default_factory=dict)
    lose_first_answer: bool = False
    answered_once: set[str] = field(default_factory=set)
    status: int | None = None
    unauthorised: int = 0
    bad_signatures: int = 0
    delay_seconds: float = 0.0  # hold each answer this long (or until the peer stops)
    stopping: threading.Event = field(default_factory=threading.Event)
    retry_after: str | None = None  # a Retry-After header sent with a forced status
    problem_code: str = "EPIX-MSG-001"  # the code of the refusal sent with a forced status
    problem_detail: str = "refused by the test peer"
    drip_seconds: float = 0.0  # answer 200 with a body sent one byte per this many seconds
    flood_bytes: int = 0  # answer 200 with a body of this many bytes
    hosts: list[str] = field(default_factory=list)  # the Host header of every request
    arrivals: list[str] = field(default_factory=list)  # the message id of every request, in order

    @property
    def effects(self) -> int:
        """Messages committed: one per message id, however often it arrived."""
        return len(self.receipts)

    def total_requests(self) -> int:
        with self.lock:
            return sum(self.requests.values())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the tests read the counters instead."""

    def _answer(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/xml",
        retry_after: str | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        state = self.server.state
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        message_id = self.headers.get("X-EPIX-Delivery") or self.headers.get("X-EPIX-Message-Id")
        if state.stopping.is_set() and not state.delay_seconds:
            # Stopped: a connection the sender kept open from before is cut, not answered.
            self.close_connection = True
            return
        if state.delay_seconds and state.stopping.wait(state.delay_seconds):
            self.close_connection = True  # stopped while holding the answer
            return
        if state.drip_seconds or state.flood_bytes:
            with state.lock:
                state.requests[message_id or ""] += 1
            self._misbehave(state)
            return
        with state.lock:
            state.requests[message_id or ""] += 1
            state.arrivals.append(message_id or "")
            state.hosts.append(self.headers.get("Host", ""))
            if state.status is not None:
                forced = state.status
            elif state.webhook_secret is not None:
                forced = 0
                if not verify_webhook_signature(
                    state.webhook_secret,
                    self.headers.get(SIGNATURE_HEADER),
                    body,
                    datetime.now(UTC),
                    300,
                ):
                    state.bad_signatures += 1
                    forced = 401
                else:
                    state.receipts.setdefault(message_id or "", b"ok")
            elif self.headers.get("Authorization") != f"Bearer {PEER_API_KEY}":
                state.unauthorised += 1
                forced = 401
            else:
                forced = 0
                if message_id not in state.receipts and message_id:
                    state.receipts[message_id] = self._receipt(message_id, body)
            lose = (
                forced == 0
                and state.lose_first_answer
                and message_id is not None
                and message_id not in state.answered_once
            )
            if lose and message_id is not None:
                state.answered_once.add(message_id)
        if forced:
            problem = json.dumps(
                {"errors": [{"code": state.problem_code}], "detail": state.problem_detail}
            ).encode()
            self._answer(forced, problem, "application/problem+json", state.retry_after)
            return
        if lose:
            # Committed, but the answer never reaches the sender.
            self.close_connection = True
            return
        self._answer(200, state.receipts[message_id or ""])

    def _misbehave(self, state: PeerState) -> None:
        """A far end that never finishes its answer in time, or whose answer has no end."""
        size = state.flood_bytes or 1000
        self.send_response(200)
        self.send_header("Content-Type", "application/xml")
        if state.drip_seconds:
            self.send_header("Content-Length", str(size))
        else:  # no length: the body ends when the connection closes, so only reading tells
            self.close_connection = True
        self.end_headers()
        chunk = b"x" if state.drip_seconds else b"x" * (1 << 16)
        try:
            for _ in range(0, size, len(chunk)):
                self.wfile.write(chunk)
                self.wfile.flush()
                time.sleep(state.drip_seconds)
        except OSError:  # the sender hung up
            self.close_connection = True

    def _receipt(self, message_id: str, body: bytes) -> bytes:
        identity = self.server.state.identity
        if identity is None:
            return b"ok"
        facts = ReceiptFacts(
            sha256=hashlib.sha256(body).hexdigest(),
            received_at=datetime.now(UTC),
            status="accepted",
            node_party=PEER_PARTY,
            message_id=message_id,
            sender=self.headers.get("X-EPIX-From"),
            recipient=PEER_PARTY,
        )
        node = NodeIdentity(PEER_PARTY, identity.key_pem, identity.cert_pem)
        return sign_receipt(facts, node)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, state: PeerState) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.state = state


class Peer:
    """A peer node that can be started, stopped and started again on the same port."""

    def __init__(self, state: PeerState, port: int | None = None) -> None:
        self.state = state
        self.port = port or free_port()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Peer:
        self.state.stopping.clear()
        self._server = _Server(self.port, self.state)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.state.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def enqueue_endorsements(database: Database, count: int, prefix: str = "end") -> list[str]:
    """``count`` endorsements for the peer in the outbox: their message ids."""
    ids = [f"{prefix}-{i:04d}" for i in range(count)]
    with database.unit_of_work() as session:
        for message_id in ids:
            outbox.enqueue(
                session,
                kind="endorsement",
                destination_party=PEER_PARTY,
                payload=f"<Endorsement id='{message_id}'/>".encode(),
                message_id=message_id,
                sender_party="XA",
                headers={"X-EPIX-Document-Type": "endorsement"},
            )
    return ids


def register_peer(database: Database, *, endpoint: str, identity: Identity) -> None:
    """The Secretariat's registry as the sender sees it: XB's node endpoint and node key."""
    with database.unit_of_work() as session:
        registry.add_party(
            session, code=PEER_PARTY, name="Peer Party", endpoint=endpoint, actor=SECRETARIAT
        )
        authority = registry.add_authority(
            session, party=PEER_PARTY, kind="node", name="EPIX node", actor=SECRETARIAT
        )
        registry.add_certificate(
            session,
            authority_id=authority.id,
            pem=identity.cert_pem,
            roles=["node"],
            actor=SECRETARIAT,
        )


def peer_identity() -> Identity:
    return make_identity("EPIX node of XB (TEST)", party=PEER_PARTY, kind="ec", size=256)


def sender_settings(data_dir: Path, **overrides: object) -> Settings:
    """A Party node XA that forwards to peers, with timings shrunk for tests."""
    values: dict[str, object] = {
        "data_dir": data_dir,
        "node_mode": NodeMode.PARTY,
        "node_party": "XA",
        "node_base_url": "http://127.0.0.1:9",
        "peer_api_keys": {PEER_PARTY: PEER_API_KEY},
        "outbox_base_delay_seconds": 0.02,
        "outbox_max_delay_seconds": 0.2,
        "outbox_lease_seconds": 10,
        "outbox_http_timeout_seconds": 2.0,
        "outbound_deadline_seconds": 5.0,
        "outbox_circuit_failures": 3,
        "outbox_circuit_cooldown_seconds": 0.25,
        "outbox_poll_seconds": 0.02,
        "outbox_batch_size": 20,
        "outbox_concurrency": 4,
    }
    values.update(overrides)
    return Settings.model_validate(values)


def api_client(
    database: Database, tmp_path: Path, party: str, *roles: Role, **settings: object
) -> TestClient:
    """The sending node's API (ASGI, in process) as a new user of ``party`` with ``roles``."""
    app_settings = sender_settings(tmp_path, node_base_url="http://testserver", **settings)
    with database.unit_of_work() as session:
        user = auth_service.create_user(
            session,
            username=f"{party.lower()}-{'-'.join(sorted(r.value for r in roles))}",
            party=party,
            authority=f"{party} authority",
            roles=roles,
        )
        _key, raw = auth_service.issue_api_key(session, user)
    client = TestClient(create_app(app_settings, database))
    client.headers["Authorization"] = f"Bearer {raw}"
    return client


def rows_after_one_pass(
    database: Database, settings: Settings, *, claimed: int
) -> list[OutboxMessage]:
    """Every outbox row, oldest first, after one pass of a fresh worker that claimed
    ``claimed`` of them (the pass itself must not raise)."""
    worker = default_worker(database, settings)
    try:
        assert worker.run_once() == claimed
    finally:
        worker.close()
    with database.read() as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def states(database: Database) -> dict[str, int]:
    with database.unit_of_work() as session:
        rows = session.execute(
            select(OutboxMessage.state, func.count()).group_by(OutboxMessage.state)
        ).all()
        return {str(state): int(count) for state, count in rows}


def drain(
    step: Callable[[], int], database: Database, *, timeout: float = 30.0, pause: float = 0.02
) -> None:
    """Run ``step`` until no row is pending (or fail after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while states(database).get(OutboxState.PENDING.value, 0):
        if time.monotonic() > deadline:
            raise AssertionError(f"outbox not drained in {timeout}s: {states(database)}")
        if step() == 0:
            time.sleep(pause)
