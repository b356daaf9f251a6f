"""Inbox: leased pulls, byte-exact fetch, acknowledgement, lease expiry, atomic concurrent pulls."""

from __future__ import annotations

import hashlib
import threading
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update

from epix.db import Database
from epix.db.base import utcnow
from epix.exchange import inbox
from epix.exchange.models import InboxEntry
from epix.exchange.notifications import notify
from tests.exchange.conftest import Node, headers

MA = "management_authority"


def customs(node: Node, party: str = "XB") -> dict[str, str]:
    return {"Authorization": f"Bearer {node.key(party, 'customs')}"}


@pytest.mark.anyio
async def test_pull_fetch_ack_and_tracking(client: httpx.AsyncClient, node: Node) -> None:
    body = node.signed_permit()
    sent = await client.post(
        "/v1/messages", content=body, headers=headers(node.key("XA", MA), message_id="in-1")
    )
    assert sent.status_code == 201
    page = (await client.get("/v1/inbox", headers=customs(node))).json()
    [entry] = page["entries"]
    assert entry["message_id"] == "in-1" and entry["from"] == "XA"
    assert (await client.get("/v1/inbox", headers=customs(node))).json()["entries"] == []
    fetched = await client.get(entry["url"], headers=customs(node))
    assert fetched.content == body
    assert fetched.headers["X-EPIX-Document-SHA256"] == hashlib.sha256(body).hexdigest()
    other_party = await client.get(entry["url"], headers=customs(node, "XA"))
    assert other_party.status_code == 404
    tracked = await client.get(
        "/v1/messages/in-1", headers={"Authorization": f"Bearer {node.key('XA', MA)}"}
    )
    assert tracked.json()["state"] == "delivered"
    ack = await client.post(
        f"{entry['url']}/ack", params={"lease": page["lease_id"]}, headers=customs(node)
    )
    assert ack.status_code == 200
    tracked = await client.get(
        "/v1/messages/in-1", headers={"Authorization": f"Bearer {node.key('XA', MA)}"}
    )
    assert tracked.json()["state"] == "acknowledged" and tracked.json()["receipts"]
    again = (await client.get("/v1/inbox", headers=customs(node))).json()
    assert again["entries"] == []


@pytest.mark.anyio
async def test_unacknowledged_entries_reappear_after_the_lease(
    client: httpx.AsyncClient, node: Node
) -> None:
    with node.database.unit_of_work() as session:
        notify(session, party="XB", kind="test", subject="hello", body="first")
    first = (await client.get("/v1/inbox", headers=customs(node))).json()
    assert len(first["entries"]) == 1
    stale = await client.post(
        f"{first['entries'][0]['url']}/ack", params={"lease": "someone-else"}, headers=customs(node)
    )
    assert stale.status_code == 409 and stale.json()["code"] == "EPIX-MSG-005"
    with node.database.unit_of_work() as session:
        session.execute(update(InboxEntry).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    again = (await client.get("/v1/inbox", headers=customs(node))).json()
    assert [e["id"] for e in again["entries"]] == [first["entries"][0]["id"]]
    assert again["entries"][0]["pull_count"] == 2


@pytest.mark.anyio
async def test_cursor_pages_are_half_open_and_bad_cursors_are_refused(
    client: httpx.AsyncClient, node: Node
) -> None:
    with node.database.unit_of_work() as session:
        for index in range(5):
            notify(session, party="XB", kind="test", subject=f"n{index}", body=str(index))
    first = (await client.get("/v1/inbox", params={"limit": 2}, headers=customs(node))).json()
    second = (
        await client.get(
            "/v1/inbox", params={"limit": 2, "cursor": first["next_cursor"]}, headers=customs(node)
        )
    ).json()
    ids = [e["id"] for e in first["entries"]] + [e["id"] for e in second["entries"]]
    assert ids == sorted(ids) and len(set(ids)) == 4
    bad = await client.get("/v1/inbox", params={"cursor": "abc"}, headers=customs(node))
    assert bad.status_code == 400 and bad.json()["code"] == "EPIX-REQ-008"


def test_concurrent_pullers_never_get_the_same_entry(database: Database) -> None:
    """Guarantee 5: 20 pullers over 1,000 entries — union is everything, no overlap."""
    with database.unit_of_work() as session:
        for index in range(1000):
            session.add(
                InboxEntry(
                    recipient_party="XB",
                    kind="test",
                    subject=str(index),
                    payload=b"x",
                    content_type="text/plain",
                    created_at=utcnow(),
                    pull_count=0,
                )
            )
    got: list[list[int]] = [[] for _ in range(20)]
    errors: list[BaseException] = []

    def puller(slot: int) -> None:
        try:
            while True:
                with database.unit_of_work() as session:
                    page = inbox.pull(
                        session,
                        party="XB",
                        cursor=None,
                        limit=25,
                        lease_seconds=600,
                        skip_locked=not database.is_sqlite,
                    )
                    ids = [entry.id for entry in page.entries]
                if not ids:
                    return
                got[slot].extend(ids)
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=puller, args=(slot,)) for slot in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    everything = [entry for batch in got for entry in batch]
    assert len(everything) == 1000 and len(set(everything)) == 1000
    assert sum(1 for batch in got if batch) > 1  # the pullers really competed
