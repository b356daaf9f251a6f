"""EPIX_OUTBOUND_PROXY: requests to peer nodes and the registry source go through the
operator's HTTP proxy (with its credentials), webhooks never do; and the overall deadline
still bounds a request made through the proxy.

The proxy is a real forwarding proxy on 127.0.0.1 (absolute-form requests, as an HTTP proxy
receives them for http:// targets; peers are reachable over http only on loopback).
"""

from __future__ import annotations

import base64
import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pydantic import ValidationError

from epix.db import Database
from epix.delivery import webhooks
from epix.delivery.webhooks import publish_event, webhook_key
from epix.delivery.worker import default_worker
from epix.settings import Settings
from tests.delivery.helpers import (
    Peer,
    PeerState,
    drain,
    enqueue_endorsements,
    peer_identity,
    register_peer,
    sender_settings,
)
from tests.delivery.test_deadlines import DEADLINE, SLACK_SECONDS, DripServer, within_guard

PROXY_USER, PROXY_PASSWORD = "epix-node", "proxy-pass-TEST-ONLY"


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ForwardingProxy

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the tests read ``seen`` instead."""

    def _forward(self) -> None:
        target = urlsplit(self.path)  # absolute form: http://host:port/path
        self.server.seen.append((self.command, self.path, self.headers.get("Proxy-Authorization")))
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        headers = {
            name: value
            for name, value in self.headers.items()
            if name.lower() not in ("proxy-authorization", "proxy-connection", "connection")
        }
        upstream = http.client.HTTPConnection(target.hostname or "", target.port, timeout=10)
        try:
            upstream.request(self.command, target.path or "/", body=body, headers=headers)
            answer = upstream.getresponse()
            content = answer.read()
        except (http.client.HTTPException, OSError):
            # The peer broke off mid-answer: in the deadline test the node gave up on this
            # request first, so there is no one to answer (and no traceback in the test output).
            upstream.close()
            self.close_connection = True
            return
        try:
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in ("connection", "transfer-encoding", "content-length"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)
        finally:
            upstream.close()

    do_GET = do_POST = _forward


class _ForwardingProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.seen: list[tuple[str, str, str | None]] = []

    def url(self, *, credentials: bool = True) -> str:
        login = f"{PROXY_USER}:{PROXY_PASSWORD}@" if credentials else ""
        return f"http://{login}127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def proxy() -> Iterator[_ForwardingProxy]:
    server = _ForwardingProxy()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _expected_credentials() -> str:
    return "Basic " + base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode()


def test_a_delivery_to_a_peer_goes_through_the_proxy_with_its_credentials(
    sqlite_database: Database, proxy: _ForwardingProxy, tmp_path: Path
) -> None:
    identity = peer_identity()
    peer = Peer(PeerState(identity=identity)).start()
    try:
        register_peer(sqlite_database, endpoint=peer.url, identity=identity)
        enqueue_endorsements(sqlite_database, 1)
        worker = default_worker(
            sqlite_database, sender_settings(tmp_path, outbound_proxy=proxy.url())
        )
        try:
            drain(worker.run_once, sqlite_database)
        finally:
            worker.close()
    finally:
        peer.stop()
    assert peer.state.effects == 1
    assert proxy.seen == [
        ("POST", f"{peer.url}/v1/messages", _expected_credentials()),
    ]


def test_webhooks_never_go_through_the_proxy(
    sqlite_database: Database,
    proxy: _ForwardingProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The proxy would connect to an address the public-address check never saw."""
    monkeypatch.setattr(webhooks, "_is_internal", lambda address: address != "127.0.0.1")
    settings = sender_settings(tmp_path, outbound_proxy=proxy.url())
    receiver = Peer(PeerState())
    with sqlite_database.unit_of_work() as session:
        created = webhooks.create_subscription(
            session,
            party="XA",
            url=f"{receiver.url}/hook",
            events=["status.changed"],
            created_by="ma-xa",
            node_base_url=settings.node_base_url,
            secret_key=webhook_key(settings),
        )
        publish_event(session, party="XA", event="status.changed", event_id="p-1", data={})
    receiver.state.webhook_secret = created.secret
    receiver.start()
    worker = default_worker(sqlite_database, settings)
    try:
        drain(worker.run_once, sqlite_database)
    finally:
        worker.close()
        receiver.stop()
    assert list(receiver.state.receipts) == ["status.changed:p-1"]
    assert proxy.seen == []


def test_the_deadline_bounds_a_request_made_through_the_proxy(
    sqlite_database: Database, proxy: _ForwardingProxy, tmp_path: Path
) -> None:
    """The proxy relays a peer that drips its answer; the proxy connection is on the
    deadline's backend, so the attempt still ends at the deadline."""
    drip = DripServer("headers")
    identity = peer_identity()
    register_peer(sqlite_database, endpoint=drip.url, identity=identity)
    enqueue_endorsements(sqlite_database, 1)
    settings = sender_settings(
        tmp_path, outbound_proxy=proxy.url(credentials=False), outbound_deadline_seconds=DEADLINE
    )
    worker = default_worker(sqlite_database, settings)
    try:
        (job,) = worker.claim()
        _result, elapsed = within_guard(lambda: worker.process(job))
    finally:
        worker.close()
        drip.close()
    assert elapsed < DEADLINE + SLACK_SECONDS
    assert [(method, url) for method, url, _auth in proxy.seen] == [
        ("POST", f"{drip.url}/v1/messages")
    ]


@pytest.mark.parametrize(
    "value",
    ["socks5://127.0.0.1:1080", "127.0.0.1:3128", "http://", "http://user:secret@proxy:99999"],
)
def test_an_unusable_proxy_is_refused_at_start_without_repeating_it(value: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(outbound_proxy=value)
    (error,) = refused.value.errors()
    assert error["loc"] == ("outbound_proxy",)
    assert "secret" not in error["msg"]
