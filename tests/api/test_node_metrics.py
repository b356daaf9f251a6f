"""``/metrics`` shows the node's state from the database: outbox, inboxes, audit checkpoints
and registry, with the series naming a Party only for a node administrator or the metrics
token. Rows are made through the HTTP API, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event, func, select, update

from epix.api.app import create_app
from epix.audit.models import AuditEvent
from epix.db import Database
from epix.db.base import utcnow
from epix.delivery import outbox
from epix.delivery.models import OutboxMessage
from epix.exchange.demo import DemoSetup, bootstrap_demo
from epix.permits.samples import demo_permit
from epix.permits.writer import write_permit
from epix.registry.roles import CUSTOMS, MANAGEMENT_AUTHORITY
from epix.settings import Settings
from epix.signatures.keys import generate_identity
from epix.signatures.sign import sign_document

METRICS_TOKEN = "m" * 40
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _signed_permit(setup: DemoSetup) -> bytes:
    permit = demo_permit(number=f"XA-{uuid.uuid4().hex[:12]}")
    key_pem, cert_pem = setup.signing_identity("XA")
    return sign_document(write_permit(permit), key_pem, cert_pem)


def _node(tmp_path: Path, database: Database) -> tuple[TestClient, DemoSetup]:
    settings = Settings(
        data_dir=tmp_path / "data",
        node_base_url="http://testserver",
        metrics_token=METRICS_TOKEN,
        webhook_allow_private_addresses=True,
    )
    setup = bootstrap_demo(database, settings)
    return TestClient(create_app(settings, database), raise_server_exceptions=False), setup


def test_the_nodes_state_is_scraped_from_the_database(tmp_path: Path, database: Database) -> None:
    client, setup = _node(tmp_path, database)
    ma, xb_customs = setup.api_key("XA", MANAGEMENT_AUTHORITY), setup.api_key("XB", CUSTOMS)
    secretariat = setup.api_key("CITES", "secretariat")
    admin = next(user.api_key for user in setup.users if user.role == "node_admin")
    # XB's customs is told of every message by webhook: one outbox row per submission.
    hook = {"url": "http://127.0.0.1:9/hook", "events": ["message.received"]}
    assert client.post("/v1/webhooks", json=hook, headers=_bearer(xb_customs)).status_code == 201
    for _ in range(3):
        sent = client.post(
            "/v1/messages",
            content=_signed_permit(setup),
            headers={
                **_bearer(ma),
                "Content-Type": "application/xml",
                "X-EPIX-Message-Id": f"msg-{uuid.uuid4().hex}",
                "X-EPIX-From": "XA",
                "X-EPIX-To": "XB",
            },
        )
        assert sent.status_code == 201, sent.text
    malformed = b" " + _signed_permit(setup)  # the XML declaration no longer first
    refused = client.post(
        "/v1/messages",
        content=malformed,
        headers={
            **_bearer(ma),
            "Content-Type": "application/xml",
            "X-EPIX-Message-Id": f"msg-{uuid.uuid4().hex}",
            "X-EPIX-From": "XA",
            "X-EPIX-To": "XB",
        },
    )
    assert refused.json()["receipt_status"] == "rejected", refused.text
    unauthenticated = client.post("/v1/messages", content=b"<a/>")
    assert unauthenticated.json()["code"] == "EPIX-AUTH-001"
    page = client.get("/v1/inbox", headers=_bearer(xb_customs)).json()
    first = page["entries"][0]
    acked = client.post(
        f"{first['url']}/ack", params={"lease": page["lease_id"]}, headers=_bearer(xb_customs)
    )
    assert acked.status_code == 200
    # A worker delivers one webhook, gives up on another, and leaves the third due, queued five
    # hours ago (retried since) and due for one.
    with database.unit_of_work() as session:
        session.execute(
            update(OutboxMessage).values(
                created_at=utcnow() - timedelta(hours=5),
                next_attempt_at=utcnow() - timedelta(hours=1),
            )
        )
        delivered, failed = outbox.claim_due(session, owner="test", lease_seconds=30, limit=2)
        outbox.mark_delivered(session, delivered)
        outbox.mark_attempt_failed(session, failed, code="EPIX-DLV-003", reason="", retry_at=None)
    # A signed checkpoint, then one more audited change after it.
    assert client.post("/v1/audit/checkpoints", headers=_bearer(admin)).status_code in (200, 201)
    # Two certificates ending within 30 days: one whose authority has a later one, one not.
    xb = client.get("/v1/registry/parties/XB").json()
    customs_authority = next(a["id"] for a in xb["authorities"] if a["kind"] == "customs")
    lone = client.post(
        "/v1/registry/parties/XB/authorities",
        json={"kind": "customs", "name": "XB customs, second office"},
        headers=_bearer(secretariat),
    ).json()["id"]
    for authority in (customs_authority, lone):
        _, cert = generate_identity("XB", "customs", f"XB customs {authority}", valid_days=10)
        added = client.post(
            f"/v1/registry/authorities/{authority}/certificates",
            json={"pem": cert.decode()},
            headers=_bearer(secretariat),
        )
        assert added.status_code == 201, added.text

    public = _samples(client.get("/metrics").text)
    assert _value(public, "epix_metrics_database_up") == 1
    accepted = [
        value
        for (name, labels), value in public.items()
        if name == "epix_submissions_total" and dict(labels)["outcome"].startswith("accepted")
    ]
    assert sum(accepted) == 3
    refusal = refused.json()["code"]
    assert _value(public, "epix_submissions_total", outcome="rejected", code=refusal) == 1
    assert _value(public, "epix_submissions_total", outcome="refused", code="EPIX-AUTH-001") == 1
    assert _value(public, "epix_outbox_messages", state="pending") == 1
    assert _value(public, "epix_outbox_messages", state="failed") == 1
    assert _value(public, "epix_outbox_due_messages") == 1
    assert _value(public, "epix_outbox_outcomes_total", outcome="delivered") == 1
    assert _value(public, "epix_outbox_outcomes_total", outcome="given_up") == 1
    assert 3500 < _value(public, "epix_outbox_oldest_due_age_seconds") < 3700
    assert _value(public, "epix_inbox_waiting_messages") == 2
    assert 0 <= _value(public, "epix_inbox_oldest_waiting_age_seconds") < 600
    with database.read() as session:
        head = session.scalar(select(func.max(AuditEvent.sequence)))
        checkpoint_event = session.scalar(
            select(AuditEvent.sequence).where(AuditEvent.action == "audit_checkpoint")
        )
    assert head is not None and checkpoint_event is not None
    assert _value(public, "epix_audit_events_total") == head
    # The checkpoint covers the chain up to just before its own event.
    assert _value(public, "epix_audit_events_since_signed_checkpoint") == head - (
        checkpoint_event - 1
    )
    assert 0 <= _value(public, "epix_audit_signed_checkpoint_age_seconds") < 600
    assert _value(public, "epix_registry_certificates_expiring", successor="yes") == 1
    assert _value(public, "epix_registry_certificates_expiring", successor="no") == 1
    assert _value(public, "epix_registry_following") == 0
    assert not [key for key in public if key[0].endswith("_by_party")]
    assert not [key for key in public if "party" in dict(key[1])]

    for credential in (METRICS_TOKEN, admin):
        private = _samples(client.get("/metrics", headers=_bearer(credential)).text)
        assert _value(private, "epix_inbox_waiting_messages_by_party", party="XB") == 2
        assert _value(private, "epix_outbox_messages_by_party", party="XB", state="failed") == 1
        assert _value(private, "epix_outbox_due_messages_by_party", party="XB") == 1
        assert _value(private, "epix_inbox_waiting_messages") == 2


def test_a_credential_that_may_not_see_parties_is_refused(
    tmp_path: Path, sqlite_database: Database
) -> None:
    client, setup = _node(tmp_path, sqlite_database)
    refused = {
        "Bearer not-the-token": (401, "EPIX-AUTH-002"),
        f"Bearer {setup.api_key('XB', CUSTOMS)}": (403, "EPIX-AUTH-004"),
        f"Basic {METRICS_TOKEN}": (401, "EPIX-AUTH-001"),
    }
    for authorization, (status, code) in refused.items():
        response = client.get("/metrics", headers={"Authorization": authorization})
        assert (response.status_code, response.json()["code"]) == (status, code), authorization


# Walks a scrape may make on SQLite: two stopped by LIMIT 1 at their first row (newest signed
# checkpoint, newest registry document), the list of inbox recipients the query builds, and
# the outbox's running totals (two rows).
BOUNDED_SCANS = {
    "SCAN audit_checkpoints USING INDEX sqlite_autoindex_audit_checkpoints_1",
    "SCAN registry_documents",
    "SCAN recipients",
    "SCAN delivery_outbox_totals",
    "SCAN registry_anchors",  # a follower's Secretariat certificates: a few, one per rotation
}


def test_a_scrape_reads_index_ranges_only(tmp_path: Path, sqlite_database: Database) -> None:
    """No scrape query walks a table or a whole index: the outbox, inboxes and audit trail
    keep every row for years, and Prometheus scrapes every few seconds."""
    client, _setup = _node(tmp_path, sqlite_database)
    statements: list[tuple[str, object]] = []

    def remember(_conn, _cursor, statement, parameters, _context, _many) -> None:  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            statements.append((statement, parameters))

    event.listen(sqlite_database.engine, "before_cursor_execute", remember)
    try:
        assert client.get("/metrics").status_code == 200
    finally:
        event.remove(sqlite_database.engine, "before_cursor_execute", remember)
    tables = ("delivery_outbox", "inbox_entries", "audit_", "registry_")
    assert len([s for s, _ in statements if any(t in s for t in tables)]) >= 5
    with sqlite_database.engine.connect() as connection:
        for statement, parameters in statements:
            plan = [
                str(row[3])
                for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)  # type: ignore[arg-type]
            ]
            walks = [line for line in plan if line.startswith("SCAN ")]
            assert set(walks) <= BOUNDED_SCANS, (statement, plan)
            assert not [line for line in plan if "FOR ORDER BY" in line], (statement, plan)


def test_a_scrape_without_the_database_says_so_instead_of_failing(tmp_path: Path) -> None:
    """Prometheus must still get the HTTP counters, and a series it can alert on."""
    unreachable = Database("postgresql+psycopg://epix:epix@127.0.0.1:9/none?connect_timeout=2")
    app = create_app(Settings(data_dir=tmp_path / "data"), unreachable)
    with TestClient(app, raise_server_exceptions=False) as client:
        client.get("/healthz")
        scrape = client.get("/metrics")
    assert scrape.status_code == 200
    samples = _samples(scrape.text)
    assert _value(samples, "epix_metrics_database_up") == 0
    assert _value(samples, "epix_http_requests_total", method="GET", route="/healthz", status="200")
