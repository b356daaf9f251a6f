"""The Secretariat sees which followers fetched the registry: a real follower identifying itself
with its peer_node key to a real node (uvicorn on 127.0.0.1), on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import uvicorn
from click.testing import CliRunner

from epix.api.app import create_app
from epix.auth import service as auth_service
from epix.auth.principal import SECRETARIAT_PARTY, Role
from epix.cli.main import cli
from epix.db import Database
from epix.errors import EpixError
from epix.registry import repository
from epix.registry.anchors import announce_next_anchor
from epix.registry.follower import RegistryFollower
from epix.settings import Settings, get_settings
from tests.pki import Identity
from tests.registry.conftest import SECRETARIAT, ec_identity, populate
from tests.registry.test_http import Headers, key_for


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SecretariatNode:
    url: str
    database: Database
    follower_key: str  # XB's node, role peer_node
    secretariat: Headers
    officer: Headers  # XA's Management Authority: a valid key, but no follower


@contextmanager
def serving(
    database: Database, tmp_path: Path, secretariat_identity: Identity
) -> Iterator[SecretariatNode]:
    """The Secretariat's node, publishing the registry, served by uvicorn on loopback."""
    key, cert = tmp_path / "secretariat.key.pem", tmp_path / "secretariat.cert.pem"
    key.write_bytes(secretariat_identity.key_pem)
    cert.write_bytes(secretariat_identity.cert_pem)
    with database.unit_of_work() as session:
        populate(session)
    port = _free_port()
    settings = Settings(
        data_dir=tmp_path / "data",
        node_base_url=f"http://127.0.0.1:{port}",
        run_worker_in_process=False,
        registry_signing_key_path=key,
        registry_signing_cert_path=cert,
    )
    app = create_app(settings, database)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    try:
        yield SecretariatNode(
            url=f"http://127.0.0.1:{port}",
            database=database,
            follower_key=key_for(database, "XB", Role.PEER_NODE)["Authorization"][7:],
            secretariat=key_for(database, SECRETARIAT_PARTY, Role.SECRETARIAT),
            officer=key_for(database, "XA", Role.MANAGEMENT_AUTHORITY),
        )
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def node(
    database: Database, tmp_path: Path, secretariat_identity: Identity
) -> Iterator[SecretariatNode]:
    with serving(database, tmp_path, secretariat_identity) as served:
        yield served


def follower(tmp_path: Path, url: str, anchor: Identity, api_key: str | None) -> RegistryFollower:
    """A follower node with its own SQLite database."""
    database = Database(f"sqlite:///{tmp_path / 'follower.sqlite3'}")
    database.migrate()
    return RegistryFollower(
        database, source_url=url, anchor_pem=anchor.cert_pem, deadline_seconds=5, api_key=api_key
    )


def followers(node: SecretariatNode) -> dict[str, object]:
    answer = httpx.get(f"{node.url}/v1/registry/followers", headers=node.secretariat, timeout=10)
    assert answer.status_code == 200, answer.text
    report: dict[str, object] = answer.json()
    return report


def test_a_follower_presenting_its_key_is_recorded_and_the_secretariat_sees_who_moved(
    node: SecretariatNode,
    tmp_path: Path,
    secretariat_identity: Identity,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    xb = follower(tmp_path, f"{node.url}/v1/registry", secretariat_identity, node.follower_key)
    first = xb.refresh()
    assert first.changed
    (fetch,) = followers(node)["followers"]  # type: ignore[misc]
    assert fetch["party"] == "XB" and fetch["status"] == 200
    assert fetch["version"] == first.version and fetch["has_newest_anchor"] is None

    assert not xb.refresh().changed  # conditional: 304, and recorded as such
    (fetch,) = followers(node)["followers"]  # type: ignore[misc]
    assert (fetch["status"], fetch["version"]) == (304, first.version)

    # Anonymous callers are served as before and recorded nowhere.
    anonymous = httpx.get(f"{node.url}/v1/registry", timeout=10)
    assert anonymous.status_code == 200
    assert [f["party"] for f in followers(node)["followers"]] == ["XB"]  # type: ignore[attr-defined]

    # The Secretariat announces its next key: XB has not fetched it yet, then has.
    successor = ec_identity("CITES Secretariat next (TEST)", party="CH")
    with node.database.unit_of_work() as session:
        announce_next_anchor(
            session,
            successor.cert_pem,
            secretariat_identity.key_pem,
            secretariat_identity.cert_pem,
            actor=SECRETARIAT,
        )
    report = followers(node)
    assert report["newest_anchor"] == successor.fingerprint
    assert [f["has_newest_anchor"] for f in report["followers"]] == [False]  # type: ignore[attr-defined]
    moved = xb.refresh()
    assert moved.changed and moved.version > first.version
    (fetch,) = followers(node)["followers"]  # type: ignore[misc]
    assert fetch["version"] == moved.version and fetch["status"] == 200
    assert fetch["anchor_fingerprint"] == successor.fingerprint
    assert fetch["has_newest_anchor"] is True

    # The same from the command line, on the Secretariat's database.
    monkeypatch.setenv("EPIX_DATA_DIR", str(tmp_path / "cli-data"))
    monkeypatch.setenv("EPIX_DATABASE_URL", node.database.url)
    get_settings.cache_clear()
    try:
        shown = CliRunner().invoke(cli, ["registry", "followers"])
    finally:
        get_settings.cache_clear()
    assert shown.exit_code == 0, shown.output
    assert f"newest announced anchor: {successor.fingerprint}" in shown.output
    assert f"XB  {fetch['fetched_at']}  version {moved.version} (200)" in shown.output
    assert "carries the newest anchor: yes" in shown.output

    # Only the Secretariat sees the list; a follower's own key does not.
    refused = httpx.get(
        f"{node.url}/v1/registry/followers",
        headers={"Authorization": f"Bearer {node.follower_key}"},
        timeout=10,
    )
    assert (refused.status_code, refused.json()["code"]) == (403, "EPIX-AUTH-004")
    xb.client.close()
    xb.database.dispose()


def test_a_refused_key_is_refused_and_other_callers_are_served_unrecorded(
    node: SecretariatNode,
) -> None:
    url = f"{node.url}/v1/registry"
    anonymous = httpx.get(url, timeout=10)
    assert anonymous.status_code == 200
    disabled = key_for(node.database, "XC", Role.PEER_NODE)
    with node.database.unit_of_work() as session:
        auth_service.disable_user(session, auth_service.get_user(session, "peer_node-xc"))
    for headers, status, code in (
        (disabled, 403, "EPIX-AUTH-006"),
        ({"Authorization": "Bearer not-a-key"}, 401, "EPIX-AUTH-002"),
        ({"X-API-Key": "not-a-key"}, 401, "EPIX-AUTH-002"),
        ({"Authorization": "Basic eDp5"}, 401, "EPIX-AUTH-001"),
    ):
        refused = httpx.get(url, headers=headers, timeout=10)
        assert (refused.status_code, refused.json()["code"]) == (status, code), headers
        assert b"<Registry" not in refused.content
    # A valid key of a user who is no follower node gets the document, and is not recorded.
    officer = httpx.get(url, headers=node.officer, timeout=10)
    assert officer.status_code == 200 and officer.content == anonymous.content
    assert httpx.get(url, timeout=10).content == anonymous.content
    assert followers(node) == {"newest_anchor": None, "followers": []}


def test_anonymous_fetches_take_no_sqlite_write_lock(
    sqlite_database: Database, tmp_path: Path, secretariat_identity: Identity
) -> None:
    """A follower's fetch used to run in a write transaction (BEGIN IMMEDIATE): while any
    writer held SQLite's lock, every GET /v1/registry waited for it. Now the document is read
    on a snapshot, and only a fetch to record (or a new version to sign) writes."""
    with serving(sqlite_database, tmp_path, secretariat_identity) as node:
        url = f"{node.url}/v1/registry"
        assert httpx.get(url, timeout=10).status_code == 200  # signed once, before the writer
        with sqlite_database.unit_of_work() as session:
            repository.lock_state(session)  # a registry change in progress
            started = time.monotonic()
            answer = httpx.get(url, timeout=10)
            assert answer.status_code == 200, answer.text
            assert time.monotonic() - started < 1.0


def test_the_key_never_travels_in_clear_nor_into_the_log(
    tmp_path: Path, secretariat_identity: Identity, caplog: pytest.LogCaptureFixture
) -> None:
    """Off loopback a plain http source would carry the key in clear: the follower fetches
    anonymously (here through a proxy on loopback, which sees every header it sends)."""
    seen: list[str | None] = []

    class Proxy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    secret = "peer-key-that-must-stay-secret"
    try:
        database = Database(f"sqlite:///{tmp_path / 'follower.sqlite3'}")
        database.migrate()
        with caplog.at_level(logging.DEBUG):
            for source, sent in (
                ("http://registry.example/v1/registry", None),
                ("https://registry.example/v1/registry", None),  # CONNECT: the proxy sees no GET
                ("http://127.0.0.1:9/v1/registry", f"Bearer {secret}"),
            ):
                seen.clear()
                follower = RegistryFollower(
                    database,
                    source_url=source,
                    anchor_pem=secretariat_identity.cert_pem,
                    deadline_seconds=5,
                    proxy=f"http://127.0.0.1:{proxy.server_address[1]}",
                    api_key=secret,
                )
                with pytest.raises(EpixError, match="EPIX-REG-009"):
                    follower.refresh()  # the proxy answers 503: no copy held
                follower.client.close()
                assert seen == ([sent] if source.startswith("http:") else []), source
        assert secret not in caplog.text
        assert "not sending the API key" in caplog.text
        database.dispose()
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(timeout=5)


def test_fetches_of_one_party_at_once_leave_one_row(node: SecretariatNode) -> None:
    """The row is upserted in one statement: concurrent fetches (two processes of one
    follower, say) neither collide on the key nor fail the answer."""
    headers = {"Authorization": f"Bearer {node.follower_key}"}
    url = f"{node.url}/v1/registry"
    assert httpx.get(url, timeout=10).status_code == 200  # signed once; no fetch recorded yet
    with ThreadPoolExecutor(8) as pool:
        statuses = list(
            pool.map(lambda _: httpx.get(url, headers=headers, timeout=30).status_code, range(16))
        )
    assert statuses == [200] * 16
    (fetch,) = followers(node)["followers"]  # type: ignore[misc]
    assert fetch["party"] == "XB" and fetch["status"] == 200
