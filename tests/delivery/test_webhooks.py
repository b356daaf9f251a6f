"""Webhooks: URL checks (EPIX-DLV-004), HMAC signatures with a replay window, fan-out, delivery
to a real receiver that verifies every signature, and the subscription API."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from epix import outbound
from epix.audit.models import AuditEvent
from epix.auth.principal import Role
from epix.db import Database
from epix.delivery import outbox, webhooks
from epix.delivery.models import OutboxMessage, OutboxState, WebhookSubscription
from epix.delivery.webhooks import (
    check_webhook_url,
    publish_event,
    sign_webhook,
    verify_webhook_signature,
    webhook_key,
)
from epix.delivery.worker import default_worker, start_worker_thread
from epix.errors import EpixError
from epix.outbound import outbound_client
from tests.delivery.helpers import (
    PEER_PARTY,
    Peer,
    PeerState,
    api_client,
    drain,
    peer_identity,
    register_peer,
    sender_settings,
)

NODE = "https://epix.xa.example.org"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
KEY = bytes(range(32))  # a fixed sealing key for subscriptions that are never delivered


@pytest.mark.parametrize(
    "url",
    [
        "ftp://systems.xa.example.org/hook",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "https:///no-host",
        "not a url",
        "https://epix.xa.example.org/v1/messages",  # the node itself
        "https://EPIX.xa.example.org:443/hook",
        "http://127.0.0.1:443/hook",  # loopback on the node's port
        "http://localhost:443/hook",
        "http://[::1]:443/hook",
        "https://systems.xa.example.org:99999/hook",
    ],
)
def test_webhook_url_that_is_not_http_or_points_at_the_node_is_refused(url: str) -> None:
    with pytest.raises(EpixError) as refused:
        check_webhook_url(url, node_base_url=NODE)
    (finding,) = refused.value.findings
    assert finding.code == "EPIX-DLV-004"
    assert finding.location == "url"


def test_webhook_urls_of_other_systems_are_accepted() -> None:
    for url in ("https://systems.xa.example.org/hook", "https://93.184.216.34/epix"):
        assert check_webhook_url(url, node_base_url=NODE) == url
    allowed = check_webhook_url(
        "http://127.0.0.1:8081/epix", node_base_url=NODE, allow_private_addresses=True
    )
    assert allowed == "http://127.0.0.1:8081/epix"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8081/epix",
        "http://localhost:8081/epix",
        "http://10.1.2.3/hook",
        "http://172.16.0.9/hook",
        "https://192.168.1.1/hook",
        "http://169.254.169.254/latest/meta-data",  # cloud metadata (link-local)
        "http://[fd00::1]/hook",  # RFC 4193
        "http://[fe80::1]/hook",
        "http://[::ffff:10.0.0.1]/hook",
        "http://224.0.0.1/hook",
        "http://0.0.0.0:8081/hook",
        "http://240.0.0.1/hook",
    ],
)
def test_webhook_url_at_an_internal_address_is_refused_unless_allowed(url: str) -> None:
    with pytest.raises(EpixError) as refused:
        check_webhook_url(url, node_base_url=NODE)
    (finding,) = refused.value.findings
    assert finding.code == "EPIX-DLV-004"
    assert "internal address" in finding.message
    assert "EPIX_WEBHOOK_ALLOW_PRIVATE_ADDRESSES" in finding.message
    assert check_webhook_url(url, node_base_url=NODE, allow_private_addresses=True) == url


def test_webhook_host_name_resolving_to_a_private_address_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(webhooks, "_resolve", lambda host, port: ["93.184.216.34", "10.0.0.5"])
    with pytest.raises(EpixError) as refused:
        check_webhook_url("https://hooks.xa.example.org/h", node_base_url=NODE)
    assert "10.0.0.5" in refused.value.findings[0].message


def test_webhook_re_pointed_at_a_private_address_after_subscribing_is_not_delivered(
    sqlite_database: Database, receiver: Peer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = sender_settings(tmp_path)
    monkeypatch.setattr(webhooks, "_resolve", lambda host, port: ["93.184.216.34"])
    with sqlite_database.unit_of_work() as session:
        webhooks.create_subscription(
            session,
            party="XA",
            url="http://hooks.xa.example.org:8081/h",
            events=["status.changed"],
            created_by="ma-xa",
            node_base_url=settings.node_base_url,
            secret_key=webhook_key(settings),
        )
        publish_event(session, party="XA", event="status.changed", event_id="p-1", data={})
    monkeypatch.setattr(webhooks, "_resolve", lambda host, port: ["127.0.0.1"])
    worker = default_worker(sqlite_database, settings)
    try:
        drain(worker.run_once, sqlite_database)
    finally:
        worker.close()
    with sqlite_database.unit_of_work() as session:
        row = session.scalars(select(OutboxMessage)).one()
        assert row.state == OutboxState.FAILED
        assert row.last_error_code == "EPIX-DLV-004"
        assert row.last_error is not None and "127.0.0.1" in row.last_error
        assert row.attempts <= 1


def test_a_webhook_connects_to_the_address_it_judged_and_keeps_its_host_name(
    sqlite_database: Database, receiver: Peer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The address judged public is the address connected to, with no second lookup in
    between that DNS could answer differently. The host is under .invalid, so only the node's
    resolver knows it; the receiver can only listen on loopback, so loopback counts as public
    here and nothing else does."""
    settings = sender_settings(tmp_path)  # internal hosts not allowed: the pinned transport
    host = "hooks.xa.invalid"
    lookups: list[str] = []

    def resolve(name: str, port: int) -> list[str]:
        lookups.append(name)
        return ["127.0.0.1"] if name == host else []

    monkeypatch.setattr(webhooks, "_resolve", resolve)
    monkeypatch.setattr(webhooks, "_is_internal", lambda address: address != "127.0.0.1")
    with sqlite_database.unit_of_work() as session:
        created = webhooks.create_subscription(
            session,
            party="XA",
            url=f"http://{host}:{receiver.port}/h",
            events=["status.changed"],
            created_by="ma-xa",
            node_base_url=settings.node_base_url,
            secret_key=webhook_key(settings),
        )
        publish_event(session, party="XA", event="status.changed", event_id="p-1", data={})
    receiver.state.webhook_secret = created.secret
    receiver.start()
    lookups.clear()  # the subscription's own check
    worker = default_worker(sqlite_database, settings)
    try:
        drain(worker.run_once, sqlite_database)
    finally:
        worker.close()
    assert list(receiver.state.receipts) == ["status.changed:p-1"]
    assert receiver.state.hosts == [f"{host}:{receiver.port}"]
    assert lookups == [host]  # one lookup, made by the connection itself


def test_a_webhook_host_with_one_internal_address_among_public_ones_is_not_connected_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(webhooks, "_resolve", lambda host, port: ["93.184.216.34", "10.0.0.5"])
    with _public_client() as client:
        with pytest.raises(webhooks.InternalAddress, match=r"10\.0\.0\.5"):
            client.post("https://hooks.xa.example.org/h", content=b"{}")
        monkeypatch.setattr(webhooks, "_resolve", lambda host, port: [])
        with pytest.raises(httpx.ConnectError, match="does not resolve"):
            client.post("https://hooks.xa.example.org/h", content=b"{}")


def _public_client() -> httpx.Client:
    """A client connecting as webhook deliveries do, only to addresses judged public."""
    return outbound_client(deadline_seconds=10, timeout=5, backend=webhooks.PublicAddressBackend())


def _tls_files(tmp_path: Path, host: str) -> tuple[Path, Path, Path]:
    """TEST KEYS ONLY: a throwaway CA and a server certificate for ``host`` it signed."""
    now = datetime.now(UTC)

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    ca_key, server_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("EPIX webhook test CA"))
        .issuer_name(name("EPIX webhook test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        x509.CertificateBuilder()
        .subject_name(name(host))
        .issuer_name(ca.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = (tmp_path / f"{host}-ca.pem", tmp_path / f"{host}.pem", tmp_path / f"{host}.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def _host_recorder(hosts: list[str]) -> type[BaseHTTPRequestHandler]:
    """A handler that answers 204 and notes each request's Host header."""

    class Recorder(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            hosts.append(self.headers.get("Host", ""))
            self.send_response(204)
            self.end_headers()

    return Recorder


@pytest.mark.parametrize("certified_name", ["hooks.xa.invalid", "other.xa.invalid"])
def test_over_tls_the_webhook_host_name_is_sent_and_verified_not_the_pinned_address(
    certified_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SNI and the certificate check use the URL's name while the connection goes to the
    address judged public: a certificate for the name passes, one for another name fails."""
    ca_path, cert_path, key_path = _tls_files(tmp_path, certified_name)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_path, key_path)
    names: list[str | None] = []
    server_context.sni_callback = lambda sock, server_name, context: names.append(server_name)
    hosts: list[str] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _host_recorder(hosts))
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    host = "hooks.xa.invalid"
    monkeypatch.setattr(webhooks, "_resolve", lambda name, port: ["127.0.0.1"])
    monkeypatch.setattr(webhooks, "_is_internal", lambda address: address != "127.0.0.1")
    monkeypatch.setattr(
        outbound.httpx,
        "create_ssl_context",
        lambda: ssl.create_default_context(cafile=str(ca_path)),
    )
    try:
        with _public_client() as client:
            if certified_name == host:
                response = client.post(f"https://{host}:{port}/h", content=b"{}")
                assert response.status_code == 204
                assert hosts == [f"{host}:{port}"]
            else:
                with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                    client.post(f"https://{host}:{port}/h", content=b"{}")
    finally:
        server.shutdown()
        server.server_close()
    assert names == [host]


def test_signature_verifies_only_for_the_same_secret_body_and_window() -> None:
    body = b'{"event":"message.received"}'
    header = sign_webhook("whsec_one", body, NOW)
    assert header.startswith(f"t={int(NOW.timestamp())},v1=")
    assert verify_webhook_signature("whsec_one", header, body, NOW + timedelta(seconds=299), 300)
    assert not verify_webhook_signature("whsec_two", header, body, NOW, 300)
    assert not verify_webhook_signature("whsec_one", header, body + b" ", NOW, 300)
    assert not verify_webhook_signature("whsec_one", header, body, NOW + timedelta(seconds=301))
    assert not verify_webhook_signature("whsec_one", header, body, NOW - timedelta(seconds=301))
    assert not verify_webhook_signature("whsec_one", None, body, NOW)
    assert not verify_webhook_signature("whsec_one", "v1=abc", body, NOW)
    forged = header.replace(f"t={int(NOW.timestamp())}", f"t={int(NOW.timestamp()) + 60}")
    assert not verify_webhook_signature("whsec_one", forged, body, NOW)


def test_during_a_rotation_the_signature_carries_both_secrets_and_either_verifies() -> None:
    body = b'{"event":"status.changed"}'
    header = sign_webhook("whsec_new", body, NOW, previous="whsec_old")
    timestamp, new, old = header.split(",")
    assert timestamp == f"t={int(NOW.timestamp())}"
    assert new == sign_webhook("whsec_new", body, NOW).split(",")[1]
    assert old == sign_webhook("whsec_old", body, NOW).split(",")[1]
    for secret in ("whsec_new", "whsec_old"):
        assert verify_webhook_signature(secret, header, body, NOW)
        assert verify_webhook_signature(secret, f"{timestamp},{old},{new}", body, NOW)
    assert not verify_webhook_signature("whsec_other", header, body, NOW)


def test_events_reach_only_subscriptions_of_that_party_and_event(sqlite_database: Database) -> None:
    with sqlite_database.unit_of_work() as session:
        mine = webhooks.create_subscription(
            session,
            party="XA",
            url="https://a.example.org/h",
            events=["message.received"],
            created_by="ma-xa",
            node_base_url=NODE,
            secret_key=KEY,
        )
        webhooks.create_subscription(
            session,
            party="XA",
            url="https://b.example.org/h",
            events=["status.changed"],
            created_by="ma-xa",
            node_base_url=NODE,
            secret_key=KEY,
        )
        webhooks.create_subscription(
            session,
            party="XB",
            url="https://c.example.org/h",
            events=["message.received"],
            created_by="ma-xb",
            node_base_url=NODE,
            secret_key=KEY,
        )
        rows = publish_event(
            session, party="XA", event="message.received", event_id="m-1", data={"id": "m-1"}
        )
        again = publish_event(
            session, party="XA", event="message.received", event_id="m-1", data={"id": "m-1"}
        )
        assert [row.target_url for row in rows] == ["https://a.example.org/h"]
        assert [row.id for row in again] == [rows[0].id]
        assert rows[0].subscription_id == mine.subscription.id
        assert rows[0].headers["X-EPIX-Event"] == "message.received"
        with pytest.raises(EpixError) as unknown:
            webhooks.create_subscription(
                session,
                party="XA",
                url="https://a.example.org/h",
                events=["permit.stolen"],
                created_by="ma-xa",
                node_base_url=NODE,
                secret_key=KEY,
            )
        assert unknown.value.findings[0].code == "EPIX-DLV-007"


@pytest.fixture
def receiver() -> Iterator[Peer]:
    peer = Peer(PeerState())
    yield peer
    peer.stop()


def test_webhooks_are_delivered_signed_and_a_disabled_subscription_stops_delivery(
    sqlite_database: Database, receiver: Peer, tmp_path: Path
) -> None:
    settings = sender_settings(tmp_path, webhook_allow_private_addresses=True)
    with sqlite_database.unit_of_work() as session:
        live = webhooks.create_subscription(
            session,
            party="XA",
            url=receiver.url + "/hook",
            events=["message.received"],
            created_by="ma-xa",
            node_base_url=settings.node_base_url,
            secret_key=webhook_key(settings),
            allow_private_addresses=True,
        )
        for i in range(3):
            publish_event(
                session, party="XA", event="message.received", event_id=f"m-{i}", data={"i": i}
            )
    receiver.state.webhook_secret = live.secret
    receiver.start()
    worker = default_worker(sqlite_database, settings)
    try:
        drain(worker.run_once, sqlite_database)
        with sqlite_database.unit_of_work() as session:
            publish_event(session, party="XA", event="message.received", event_id="m-9", data={})
            webhooks.disable_subscription(session, live.subscription.id, party="XA")
        drain(worker.run_once, sqlite_database)
    finally:
        worker.close()
    assert receiver.state.bad_signatures == 0
    assert sorted(receiver.state.receipts) == [f"message.received:m-{i}" for i in range(3)]
    with sqlite_database.unit_of_work() as session:
        query = select(OutboxMessage).where(OutboxMessage.message_id == "message.received:m-9")
        dropped = session.scalars(query).one()
        assert dropped.state == OutboxState.FAILED
        assert dropped.last_error_code == "EPIX-DLV-009"


def test_a_failed_message_tells_the_senders_subscribed_system(
    sqlite_database: Database, receiver: Peer, tmp_path: Path
) -> None:
    settings = sender_settings(tmp_path, webhook_allow_private_addresses=True)
    refusing = Peer(PeerState(identity=peer_identity(), status=422)).start()
    try:
        register_peer(sqlite_database, endpoint=refusing.url, identity=peer_identity())
        with sqlite_database.unit_of_work() as session:
            created = webhooks.create_subscription(
                session,
                party="XA",
                url=receiver.url,
                events=["delivery.failed"],
                created_by="ma-xa",
                node_base_url=settings.node_base_url,
                secret_key=webhook_key(settings),
                allow_private_addresses=True,
            )
            outbox.enqueue(
                session,
                kind="endorsement",
                destination_party=PEER_PARTY,
                payload=b"<e/>",
                message_id="e-1",
                sender_party="XA",
            )
        receiver.state.webhook_secret = created.secret
        receiver.start()
        worker = default_worker(sqlite_database, settings)
        try:
            drain(worker.run_once, sqlite_database)
        finally:
            worker.close()
    finally:
        refusing.stop()
    (delivery_id,) = receiver.state.receipts
    assert delivery_id.startswith("delivery.failed:")


def test_subscription_api_shows_the_secret_once_and_refuses_bad_urls(
    sqlite_database: Database, tmp_path: Path
) -> None:
    ma = api_client(sqlite_database, tmp_path, "XA", Role.MANAGEMENT_AUTHORITY)
    other = api_client(sqlite_database, tmp_path, "XB", Role.MANAGEMENT_AUTHORITY)

    created = ma.post(
        "/v1/webhooks", json={"url": "https://ma.example.org/h", "events": ["status.changed"]}
    )
    assert created.status_code == 201
    body = created.json()
    assert body["secret"].startswith("whsec_")
    assert body["party"] == "XA"

    listed = ma.get("/v1/webhooks").json()
    assert [item["id"] for item in listed] == [body["id"]]
    assert "secret" not in listed[0]
    assert other.get("/v1/webhooks").json() == []

    for url in ("ftp://ma.example.org/h", "http://testserver/v1/messages", "http://10.0.0.1/h"):
        refused = ma.post("/v1/webhooks", json={"url": url, "events": ["status.changed"]})
        assert refused.status_code == 422
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["errors"][0]["code"] == "EPIX-DLV-004"
    unknown = ma.post("/v1/webhooks", json={"url": "https://x.org/h", "events": ["nope"]})
    assert unknown.json()["errors"][0]["code"] == "EPIX-DLV-007"

    assert other.delete(f"/v1/webhooks/{body['id']}").status_code == 404
    assert ma.delete(f"/v1/webhooks/{body['id']}").status_code == 204
    assert ma.get("/v1/webhooks").json() == []
    assert ma.post("/v1/webhooks", json={"url": 5}).status_code == 422


def test_senders_see_their_failed_deliveries_and_only_node_admins_resend(
    sqlite_database: Database, tmp_path: Path
) -> None:
    ids = {}
    with sqlite_database.unit_of_work() as session:
        for party in ("XA", "XC"):
            row = outbox.enqueue(
                session,
                kind="endorsement",
                destination_party="XB",
                payload=b"<e/>",
                message_id=f"e-{party}",
                sender_party=party,
            )
            row.state = OutboxState.FAILED.value
            row.last_error_code = "EPIX-DLV-003"
            row.last_error = "gave up"
            ids[party] = row.id
    ma = api_client(sqlite_database, tmp_path, "XA", Role.MANAGEMENT_AUTHORITY)
    admin = api_client(sqlite_database, tmp_path, "XA", Role.NODE_ADMIN)

    mine = ma.get("/v1/outbox", params={"state": "failed"}).json()
    assert [(r["message_id"], r["last_error"]) for r in mine] == [("e-XA", "gave up")]
    # XA's Party node: its admin, too, sees only what XA sent (a hub's admins see every row).
    assert len(admin.get("/v1/outbox", params={"state": "failed"}).json()) == 1
    for caller in (ma, admin):
        assert caller.get(f"/v1/outbox/{ids['XC']}").json()["errors"][0]["code"] == "EPIX-DLV-009"

    refused = ma.post(f"/v1/outbox/{mine[0]['id']}/resend")
    assert refused.status_code == 403
    assert refused.json()["errors"][0]["code"] == "EPIX-AUTH-004"
    resent = admin.post(f"/v1/outbox/{mine[0]['id']}/resend")
    assert resent.status_code == 200
    assert resent.json()["state"] == "pending"
    twice = admin.post(f"/v1/outbox/{mine[0]['id']}/resend")
    assert twice.status_code == 409
    assert twice.json()["errors"][0]["code"] == "EPIX-DLV-008"
    assert admin.get("/v1/outbox", params={"state": "stuck"}).status_code == 422


def test_in_process_worker_thread_delivers_and_stops_cleanly(
    sqlite_database: Database, receiver: Peer, tmp_path: Path
) -> None:
    settings = sender_settings(tmp_path, webhook_allow_private_addresses=True)
    with sqlite_database.unit_of_work() as session:
        created = webhooks.create_subscription(
            session,
            party="XA",
            url=receiver.url,
            events=["status.changed"],
            created_by="ma-xa",
            node_base_url=settings.node_base_url,
            secret_key=webhook_key(settings),
            allow_private_addresses=True,
        )
        publish_event(session, party="XA", event="status.changed", event_id="p-1", data={})
    receiver.state.webhook_secret = created.secret
    receiver.start()
    handle = start_worker_thread(sqlite_database, settings)
    try:
        deadline = time.monotonic() + 20
        while not receiver.state.receipts and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        handle.stop(timeout=10)
    assert not handle.running
    assert list(receiver.state.receipts) == ["status.changed:p-1"]


def test_webhook_secrets_are_sealed_at_rest_and_open_only_with_the_nodes_key(
    sqlite_database: Database, tmp_path: Path
) -> None:
    settings = sender_settings(tmp_path)
    key = webhook_key(settings)
    assert (
        key
        == webhook_key(sender_settings(tmp_path))
        != webhook_key(sender_settings(tmp_path, secret_key="another node's key, 32 bytes or more"))
    )
    with sqlite_database.unit_of_work() as session:
        created = webhooks.create_subscription(
            session,
            party="XA",
            url="https://a.example.org/h",
            events=["status.changed"],
            created_by="ma-xa",
            node_base_url=NODE,
            secret_key=key,
        )
        stored = created.subscription.secret
    assert created.secret.startswith("whsec_")
    assert created.secret not in stored and webhooks.is_sealed(stored)
    assert webhooks.open_secret(key, stored, party="XA") == created.secret
    with pytest.raises(webhooks.UnreadableSecret):
        webhooks.open_secret(KEY, stored, party="XA")
    with pytest.raises(webhooks.UnreadableSecret):  # bound to its Party: rows cannot swap
        webhooks.open_secret(key, stored, party="XB")


def test_a_plain_text_secret_from_before_sealing_still_signs_and_is_sealed_on_use(
    sqlite_database: Database, receiver: Peer, tmp_path: Path
) -> None:
    settings = sender_settings(tmp_path, webhook_allow_private_addresses=True)
    with sqlite_database.unit_of_work() as session:
        created = webhooks.create_subscription(
            session,
            party="XA",
            url=receiver.url,
            events=["status.changed"],
            created_by="ma-xa",
            node_base_url=settings.node_base_url,
            secret_key=webhook_key(settings),
            allow_private_addresses=True,
        )
        created.subscription.secret = "whsec_legacy"  # as a row written before sealing
        publish_event(session, party="XA", event="status.changed", event_id="p-1", data={})
        subscription_id = created.subscription.id
    receiver.state.webhook_secret = "whsec_legacy"
    receiver.start()
    worker = default_worker(sqlite_database, settings)
    try:
        drain(worker.run_once, sqlite_database)
    finally:
        worker.close()
    assert receiver.state.bad_signatures == 0
    assert list(receiver.state.receipts) == ["status.changed:p-1"]
    with sqlite_database.unit_of_work() as session:
        stored = session.get(WebhookSubscription, subscription_id)
        assert stored is not None and webhooks.is_sealed(stored.secret)
        key = webhook_key(settings)
        assert webhooks.open_secret(key, stored.secret, party="XA") == "whsec_legacy"


def test_a_secret_that_no_longer_opens_fails_the_delivery_with_a_reason(
    sqlite_database: Database, tmp_path: Path
) -> None:
    settings = sender_settings(tmp_path, webhook_allow_private_addresses=True)
    with sqlite_database.unit_of_work() as session:
        webhooks.create_subscription(
            session,
            party="XA",
            url="http://127.0.0.1:9/h",
            events=["status.changed"],
            created_by="ma-xa",
            node_base_url="https://epix.xa.example.org",
            secret_key=KEY,  # not this node's key: as if EPIX_SECRET_KEY had changed
            allow_private_addresses=True,
        )
        publish_event(session, party="XA", event="status.changed", event_id="p-1", data={})
    worker = default_worker(sqlite_database, settings)
    try:
        drain(worker.run_once, sqlite_database)
    finally:
        worker.close()
    with sqlite_database.unit_of_work() as session:
        row = session.scalars(select(OutboxMessage)).one()
        assert (row.state, row.last_error_code) == (OutboxState.FAILED, "EPIX-DLV-013")
        assert row.last_error is not None and "does not decrypt" in row.last_error


def test_a_credential_in_a_webhook_url_never_reaches_the_audit_trail(
    sqlite_database: Database, receiver: Peer, tmp_path: Path
) -> None:
    """Receivers take tokens in the URL (user information, query). The trail kept the whole URL
    when subscribing, rotating, unsubscribing and on every delivery, for at least five years and
    beyond any redaction, since it cannot be edited."""
    ma = api_client(sqlite_database, tmp_path, "XA", Role.MANAGEMENT_AUTHORITY)
    secret_url = "https://hook-user:pw-s3cret@ma.example.org/h?token=tok-s3cret"
    created = ma.post("/v1/webhooks", json={"url": secret_url, "events": ["status.changed"]})
    assert created.status_code == 201
    subscription_id = created.json()["id"]
    assert ma.post(f"/v1/webhooks/{subscription_id}/secret", json={}).status_code == 200
    assert ma.delete(f"/v1/webhooks/{subscription_id}").status_code == 204

    settings = sender_settings(tmp_path, webhook_allow_private_addresses=True)
    host_and_port = receiver.url.split("://", 1)[1]
    with sqlite_database.unit_of_work() as session:
        live = webhooks.create_subscription(
            session,
            party="XA",
            url=f"http://{host_and_port}/hook?token=tok-s3cret",
            events=["message.received"],
            created_by="ma-xa",
            node_base_url=settings.node_base_url,
            secret_key=webhook_key(settings),
            allow_private_addresses=True,
        )
        publish_event(session, party="XA", event="message.received", event_id="m-1", data={})
    receiver.state.webhook_secret = live.secret
    receiver.start()
    worker = default_worker(sqlite_database, settings)
    try:
        drain(worker.run_once, sqlite_database)
    finally:
        worker.close()
    assert receiver.state.receipts
    with sqlite_database.read() as session:
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.sequence)).all()
    urls = {
        (event.action, json.loads(event.detail).get("url"))
        for event in events
        if event.action.startswith("webhook.")
    }
    assert urls == {
        ("webhook.subscribed", "https://***@ma.example.org/h?***"),
        ("webhook.secret_rotated", "https://***@ma.example.org/h?***"),
        ("webhook.unsubscribed", "https://***@ma.example.org/h?***"),
        ("webhook.delivered", f"http://{host_and_port}/hook?***"),
    }
    assert "s3cret" not in repr([(e.detail, e.headers, e.path) for e in events])


@pytest.mark.parametrize(
    "header",
    [
        "t=²,v1=abc",  # str.isdigit takes superscripts; int() does not
        "t=" + "9" * 5000 + ",v1=abc",  # past Python's digit limit for int()
        "t={t},v1=é",  # hmac.compare_digest refuses non-ASCII str
    ],
)
def test_a_malformed_signature_header_is_refused_not_raised(header: str) -> None:
    """Receivers call this in their HTTP handler on whatever header arrived: it answers
    True or False, never an exception (a 500 on the receiver's side)."""
    body = b'{"event":"message.received"}'
    sent = header.format(t=int(NOW.timestamp()))
    assert verify_webhook_signature("whsec_one", sent, body, NOW) is False


def test_the_outbox_listing_never_shows_a_webhook_urls_credentials(
    sqlite_database: Database, tmp_path: Path
) -> None:
    """The trail keeps webhook URLs without their user information and query, where receivers
    put their tokens; the outbox listing showed them whole, on a hub to the node admins, who
    see every Party's rows (another Party's subscribers' tokens)."""
    ma = api_client(sqlite_database, tmp_path, "XA", Role.MANAGEMENT_AUTHORITY, node_mode="hub")
    secret_url = "https://hook-user:pw-s3cret@ma.example.org/h?token=tok-s3cret"
    created = ma.post("/v1/webhooks", json={"url": secret_url, "events": ["status.changed"]})
    assert created.status_code == 201
    with sqlite_database.unit_of_work() as session:
        publish_event(session, party="XA", event="status.changed", event_id="p-1", data={})
    admin = api_client(sqlite_database, tmp_path, "XB", Role.NODE_ADMIN, node_mode="hub")
    listed = admin.get("/v1/outbox")
    assert listed.status_code == 200
    (row,) = listed.json()
    assert row["target_url"] == "https://***@ma.example.org/h?***"
    one = admin.get(f"/v1/outbox/{row['id']}")
    assert one.status_code == 200 and one.json()["target_url"] == row["target_url"]
    assert "s3cret" not in listed.text + one.text
