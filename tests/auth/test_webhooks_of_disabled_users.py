"""A webhook subscription is a standing feed of its Party's events (who sent what, permit
numbers and statuses) to a URL its creator chose: disabling or removing the person must end it
as it ends their keys and sessions, else a dismissed officer's own server keeps receiving
them. Their colleagues' subscriptions go on."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import select

from epix.audit.models import AuditEvent
from epix.auth import service
from epix.auth.principal import Role
from epix.db import Database
from epix.delivery.webhooks import publish_event

from .conftest import MakeUser

pytestmark = pytest.mark.anyio
HOOK = "http://93.184.216.34/epix"  # a public address: no name to resolve


def _key(database: Database, username: str) -> dict[str, str]:
    with database.unit_of_work() as session:
        raw = service.issue_api_key(session, service.get_user(session, username))[1]
    return {"Authorization": f"Bearer {raw}"}


async def _subscribe(client: httpx.AsyncClient, headers: dict[str, str], path: str) -> int:
    answer = await client.post(
        "/v1/webhooks", json={"url": HOOK + path, "events": ["message.received"]}, headers=headers
    )
    assert answer.status_code == 201, answer.text
    subscription_id: int = answer.json()["id"]
    return subscription_id


@pytest.mark.parametrize("change", ["disable", "remove"])
async def test_disabling_or_removing_a_user_stops_the_webhooks_they_made(
    client: httpx.AsyncClient, sqlite_database: Database, make_user: MakeUser, change: str
) -> None:
    make_user("leaving", party="XA")
    make_user("staying", party="XA")
    make_user("admin", party="XA", roles=(Role.NODE_ADMIN,))
    leaving, staying = _key(sqlite_database, "leaving"), _key(sqlite_database, "staying")
    theirs = await _subscribe(client, leaving, "/theirs")
    kept = await _subscribe(client, staying, "/kept")

    admin = _key(sqlite_database, "admin")
    if change == "disable":
        answer = await client.post("/v1/users/leaving/disable", json={}, headers=admin)
    else:
        answer = await client.delete("/v1/users/leaving", headers=admin)
    assert answer.status_code == 200, answer.text

    listed = await client.get("/v1/webhooks", headers=staying)
    assert [row["id"] for row in listed.json()] == [kept]
    with sqlite_database.unit_of_work() as session:
        queued = publish_event(
            session, party="XA", event="message.received", event_id="m-1", data={}
        )
        assert [row.subscription_id for row in queued] == [kept]
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == f"user_{change}d")
        ).one()
        assert json.loads(event.detail)["webhooks_stopped"] == [theirs]
