"""A URL the HTTP client cannot send to (a control character, a host that is no valid IDNA
name) is refused when subscribing and, when a row already carries one, fails with a code
instead of crashing the delivery: before, the worker raised on every claim, the row was
re-claimed at each lease's end for ever and never reached its give-up time."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from epix.db import Database
from epix.db.base import utcnow
from epix.delivery import outbox, webhooks
from epix.delivery.models import OutboxState, WebhookSubscription
from epix.delivery.webhooks import check_webhook_url, publish_event, seal_secret, webhook_key
from epix.errors import EpixError
from epix.registry.models import RegistryParty
from tests.delivery.helpers import (
    PEER_PARTY,
    peer_identity,
    register_peer,
    rows_after_one_pass,
    sender_settings,
)

UNSENDABLE = [
    "https://hooks.xa.example.org/a\tb",  # urlsplit drops the tab, httpx refuses it
    "https://hooks.xa.example.org/\x7f",
    "https://xn--zz.xa.example.org/h",  # not a valid IDNA A-label
]


@pytest.mark.parametrize("url", UNSENDABLE)
def test_a_webhook_url_the_client_cannot_send_to_is_refused_when_subscribing(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhooks, "_resolve", lambda host, port: ["93.184.216.34"])
    with pytest.raises(EpixError) as refused:
        check_webhook_url(url, node_base_url="https://epix.xa.example.org")
    (finding,) = refused.value.findings
    assert (finding.code, finding.location) == ("EPIX-DLV-004", "url")


@pytest.mark.parametrize("url", UNSENDABLE)
def test_a_stored_webhook_url_the_client_cannot_send_to_fails_the_row_once(
    sqlite_database: Database, tmp_path: Path, url: str
) -> None:
    settings = sender_settings(tmp_path)
    with sqlite_database.unit_of_work() as session:
        session.add(  # stored before subscribing checked it
            WebhookSubscription(
                party="XA",
                url=url,
                events=["status.changed"],
                secret=seal_secret(webhook_key(settings), "whsec_x", party="XA"),
                active=True,
                created_at=utcnow(),
                created_by="ma-xa",
            )
        )
        session.flush()
        publish_event(session, party="XA", event="status.changed", event_id="p-1", data={})
    (row,) = rows_after_one_pass(sqlite_database, settings, claimed=1)
    assert (row.state, row.last_error_code, row.attempts) == (
        OutboxState.FAILED,
        "EPIX-DLV-004",
        1,
    )
    assert row.lease_owner is None


def test_a_peer_endpoint_the_client_cannot_send_to_is_retried_until_give_up(
    sqlite_database: Database, tmp_path: Path
) -> None:
    """An endpoint the registry let through (ASCII, printable) that is no host name: the row
    is unroutable, retried with backoff (a corrected registry still delivers it) and given up
    at its give-up time, never re-claimed for ever."""
    settings = sender_settings(tmp_path)
    register_peer(
        sqlite_database, endpoint="https://xn--zz.xb.example.org", identity=peer_identity()
    )
    with sqlite_database.unit_of_work() as session:
        outbox.enqueue(
            session,
            kind="endorsement",
            destination_party=PEER_PARTY,
            payload=b"<e/>",
            message_id="e-1",
            sender_party="XA",
            give_up_seconds=0,
        )
    (row,) = rows_after_one_pass(sqlite_database, settings, claimed=1)
    assert (row.state, row.last_error_code, row.attempts) == (
        OutboxState.FAILED,
        "EPIX-DLV-010",
        1,
    )
    assert row.last_error is not None and "xn--zz.xb.example.org" in row.last_error
    assert row.give_up_at <= utcnow() + timedelta(seconds=1)


def test_a_malformed_endpoint_in_the_registry_does_not_stop_every_other_delivery(
    sqlite_database: Database, tmp_path: Path
) -> None:
    """A registry document the Secretariat signed carries endpoints as the schema's
    ``https?://.+``, so one such as ``https://[::1`` reaches the node's copy. Routing it
    raised in the claim's transaction, which rolled the whole batch back: the row stayed due
    first, and no row to any destination was delivered again."""
    settings = sender_settings(tmp_path)
    register_peer(sqlite_database, endpoint="https://xb.example.org", identity=peer_identity())
    with sqlite_database.unit_of_work() as session:
        session.execute(
            update(RegistryParty)
            .where(RegistryParty.code == PEER_PARTY)
            .values(endpoint_url="https://[::1")
        )
        for destination in (PEER_PARTY, "XA"):  # XA is this node's own Party: its inbox
            outbox.enqueue(
                session,
                kind="endorsement",
                destination_party=destination,
                payload=b"<e/>",
                message_id="e-1",
                sender_party="XC",
            )
    passed = rows_after_one_pass(sqlite_database, settings, claimed=2)
    rows = {row.destination_party: row for row in passed}
    assert rows["XA"].state == OutboxState.DELIVERED
    assert (rows[PEER_PARTY].state, rows[PEER_PARTY].last_error_code) == (
        OutboxState.PENDING,
        "EPIX-DLV-010",
    )
