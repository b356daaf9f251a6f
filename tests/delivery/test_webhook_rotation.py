"""Rotating a webhook subscription's secret over HTTP: only the Party's own users, audited,
the new secret shown once and sealed at rest, and deliveries signed with the new and the
replaced secret during the grace period, then with the new one only."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import select, update

from epix.audit.models import AuditEvent
from epix.auth.principal import Role
from epix.db import Database
from epix.db.base import utcnow
from epix.delivery import webhooks
from epix.delivery.models import WebhookSubscription
from epix.delivery.webhooks import SIGNATURE_HEADER, publish_event, verify_webhook_signature
from epix.delivery.worker import default_worker
from tests.delivery.helpers import api_client, drain, sender_settings

HOOK = {"url": "https://ma.example.org/h", "events": ["status.changed"]}


def _stored(database: Database, subscription_id: int) -> WebhookSubscription:
    with database.unit_of_work() as session:
        row = session.get(WebhookSubscription, subscription_id)
        assert row is not None
        session.expunge(row)
        return row


def test_only_the_partys_users_rotate_its_secret_and_the_rotation_is_audited(
    database: Database, tmp_path: Path
) -> None:
    ma = api_client(database, tmp_path, "XA", Role.MANAGEMENT_AUTHORITY)
    customs = api_client(database, tmp_path, "XA", Role.CUSTOMS)
    other = api_client(database, tmp_path, "XB", Role.MANAGEMENT_AUTHORITY)
    peer = api_client(database, tmp_path, "XA", Role.PEER_NODE)
    created = ma.post("/v1/webhooks", json=HOOK).json()
    subscription_id = created["id"]

    foreign = other.post(f"/v1/webhooks/{subscription_id}/secret")
    missing = ma.post("/v1/webhooks/999999/secret")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["errors"][0]["code"] == missing.json()["errors"][0]["code"]
    assert foreign.json()["errors"][0]["code"] == "EPIX-DLV-009"
    assert foreign.json()["detail"].replace(str(subscription_id), "N") == missing.json()[
        "detail"
    ].replace("999999", "N")
    assert peer.post(f"/v1/webhooks/{subscription_id}/secret").status_code == 403
    anonymous = ma.post(f"/v1/webhooks/{subscription_id}/secret", headers={"Authorization": ""})
    assert anonymous.status_code == 401
    for grace in (-1, 8 * 24 * 3600, "soon"):
        refused = ma.post(f"/v1/webhooks/{subscription_id}/secret", json={"grace_seconds": grace})
        assert refused.status_code == 422
    assert _stored(database, subscription_id).previous_secret is None  # nothing changed yet

    before = utcnow()
    rotated = customs.post(f"/v1/webhooks/{subscription_id}/secret")
    assert rotated.status_code == 200
    body = rotated.json()
    assert body["id"] == subscription_id
    assert body["secret"].startswith("whsec_") and body["secret"] != created["secret"]
    until = datetime.fromisoformat(body["previous_secret_valid_until"])
    assert before + timedelta(hours=24) <= until <= utcnow() + timedelta(hours=24)
    (listed,) = ma.get("/v1/webhooks").json()
    assert "secret" not in listed
    assert listed["previous_secret_valid_until"] == body["previous_secret_valid_until"]

    stored = _stored(database, subscription_id)
    key = webhooks.webhook_key(sender_settings(tmp_path))
    assert webhooks.is_sealed(stored.secret) and stored.previous_secret is not None
    assert webhooks.is_sealed(stored.previous_secret)
    assert webhooks.open_secret(key, stored.secret, party="XA") == body["secret"]
    assert webhooks.open_secret(key, stored.previous_secret, party="XA") == created["secret"]

    with database.unit_of_work() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "webhook.secret_rotated")
        ).all()
        assert len(events) == 1
        (event,) = events
        assert (event.outcome, event.party, event.actor_username) == ("ok", "XA", "xa-customs")
        detail = json.loads(event.detail)
        assert detail["subscription_id"] == subscription_id
        assert detail["previous_secret_valid_until"] is not None
        everything = " ".join(str(value) for value in vars(event).values())
        assert body["secret"] not in everything and created["secret"] not in everything

    assert ma.delete(f"/v1/webhooks/{subscription_id}").status_code == 204
    assert ma.post(f"/v1/webhooks/{subscription_id}/secret").status_code == 404


class _Receiver:
    """A webhook receiver on 127.0.0.1 that keeps each request's signature header and body."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bytes]] = []
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                seen.append((self.headers.get(SIGNATURE_HEADER, ""), body))
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    server = _Receiver()
    yield server
    server.close()


def test_deliveries_are_signed_with_both_secrets_during_the_grace_period_then_the_new_only(
    database: Database, tmp_path: Path, receiver: _Receiver
) -> None:
    ma = api_client(
        database, tmp_path, "XA", Role.MANAGEMENT_AUTHORITY, webhook_allow_private_addresses=True
    )
    settings = sender_settings(tmp_path, webhook_allow_private_addresses=True)
    first = ma.post("/v1/webhooks", json={"url": receiver.url, "events": ["status.changed"]})
    subscription_id, old = first.json()["id"], first.json()["secret"]
    new = ma.post(f"/v1/webhooks/{subscription_id}/secret").json()["secret"]

    def deliver(event_id: str) -> tuple[str, bytes]:
        with database.unit_of_work() as session:
            publish_event(session, party="XA", event="status.changed", event_id=event_id, data={})
        worker = default_worker(database, settings)
        try:
            drain(worker.run_once, database)
        finally:
            worker.close()
        return receiver.seen[-1]

    def accepts(secret: str, delivered: tuple[str, bytes]) -> bool:
        header, body = delivered
        return verify_webhook_signature(secret, header, body, datetime.now(UTC), 300)

    during = deliver("p-1")
    assert during[0].count("v1=") == 2
    assert accepts(new, during) and accepts(old, during)  # receivers on either secret

    with database.unit_of_work() as session:  # the grace period is over
        session.execute(
            update(WebhookSubscription)
            .where(WebhookSubscription.id == subscription_id)
            .values(previous_secret_until=utcnow() - timedelta(seconds=1))
        )
    after = deliver("p-2")
    assert after[0].count("v1=") == 1
    assert accepts(new, after) and not accepts(old, after)
    stored = _stored(database, subscription_id)
    assert (stored.previous_secret, stored.previous_secret_until) == (None, None)  # dropped
    assert ma.get("/v1/webhooks").json()[0]["previous_secret_valid_until"] is None

    leaked = ma.post(f"/v1/webhooks/{subscription_id}/secret", json={"grace_seconds": 0})
    assert leaked.json()["previous_secret_valid_until"] is None
    newest = leaked.json()["secret"]
    at_once = deliver("p-3")
    assert at_once[0].count("v1=") == 1
    assert accepts(newest, at_once) and not accepts(new, at_once)
    assert [header.count("v1=") for header, _ in receiver.seen] == [2, 1, 1]
