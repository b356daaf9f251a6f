"""On a Party node its node admins manage only its own Party's users (EPIX-AUTH-005, audited):
XA's admin could otherwise mint an XB management authority or a Secretariat user, or disable
and take over the keys of another Party's account, and act as them on XA's node. Another
Party's user or key is answered as one that does not exist (EPIX-AUTH-008), so its name cannot
be probed, and audited as the EPIX-AUTH-005 it is. On a hub the node admins manage every
Party's users, as its operator does."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from epix.api.app import create_app
from epix.audit.models import AuditEvent
from epix.auth import service
from epix.auth.models import ApiKey
from epix.auth.principal import SECRETARIAT_PARTY, Role
from epix.db import Database
from epix.delivery import outbox
from epix.delivery.models import OutboxMessage, OutboxState
from epix.settings import NodeMode, Settings
from tests.database_work import database_work, writes

from .conftest import MakeUser

pytestmark = pytest.mark.anyio


def _app(tmp_path: Path, database: Database, mode: NodeMode) -> FastAPI:
    settings = Settings(
        data_dir=tmp_path / "data",
        node_base_url="http://testserver",
        node_party="XA",
        node_mode=mode,
    )
    return create_app(settings, database)


async def _client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
async def party_node(tmp_path: Path, database: Database) -> AsyncIterator[httpx.AsyncClient]:
    """XA's Party node, on SQLite and PostgreSQL."""
    async for client in _client(_app(tmp_path, database, NodeMode.PARTY)):
        yield client


@pytest.fixture
async def hub(tmp_path: Path, sqlite_database: Database) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(_app(tmp_path, sqlite_database, NodeMode.HUB)):
        yield client


def _key(database: Database, username: str) -> tuple[int, str]:
    with database.unit_of_work() as session:
        key, raw = service.issue_api_key(session, service.get_user(session, username))
        return key.id, raw


def _new_user(party: str, role: str, username: str = "minted") -> dict[str, object]:
    return {
        "username": username,
        "party": party,
        "authority": f"{party} authority",
        "roles": [role],
        "password": "a long enough password",
    }


def _denials(database: Database) -> list[tuple[str | None, str, str | None]]:
    with database.read() as session:
        events = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "auth.denied")
            .order_by(AuditEvent.sequence)
        ).all()
        return [(event.actor_username, event.outcome, event.path) for event in events]


async def test_a_party_nodes_admin_creates_only_its_own_partys_users(
    party_node: httpx.AsyncClient, database: Database, make_user_in: MakeUser
) -> None:
    make_user_in(database, "xa-admin", party="XA", roles=(Role.NODE_ADMIN,))
    admin = {"X-API-Key": _key(database, "xa-admin")[1]}
    refused = [
        _new_user("XB", "management_authority"),
        _new_user("xb", "customs"),
        _new_user(SECRETARIAT_PARTY, "secretariat"),
        _new_user("XB", "node_admin"),
    ]
    for body in refused:
        answer = await party_node.post("/v1/users", json=body, headers=admin)
        assert (answer.status_code, answer.json()["code"]) == (403, "EPIX-AUTH-005"), body
        assert answer.json()["errors"][0]["location"] == "party"
    # The secretariat role needs the Secretariat's pseudo-Party, which is not XA's.
    as_xa = await party_node.post("/v1/users", json=_new_user("XA", "secretariat"), headers=admin)
    assert as_xa.json()["code"] == "EPIX-REQ-004"
    with database.read() as session:
        assert not service.user_exists(session, "minted")
    made = await party_node.post("/v1/users", json=_new_user("XA", "customs"), headers=admin)
    assert made.status_code == 201, made.text
    assert made.json()["party"] == "XA"
    assert _denials(database) == [("xa-admin", "EPIX-AUTH-005", "/v1/users")] * len(refused)
    with database.read() as session:
        first = session.scalars(select(AuditEvent).where(AuditEvent.action == "auth.denied"))
        assert "only XA's users, not XB's" in next(iter(first)).detail  # what was attempted


async def test_a_party_nodes_admin_cannot_touch_another_partys_users_or_keys(
    party_node: httpx.AsyncClient, database: Database, make_user_in: MakeUser
) -> None:
    make_user_in(database, "xa-admin", party="XA", roles=(Role.NODE_ADMIN,))
    make_user_in(database, "xa-officer", party="XA")
    make_user_in(database, "node-xb", party="XB", roles=(Role.PEER_NODE,))
    make_user_in(database, "cites", party=SECRETARIAT_PARTY, roles=(Role.SECRETARIAT,))
    admin = {"X-API-Key": _key(database, "xa-admin")[1]}
    peer_key_id, peer_key = _key(database, "node-xb")
    calls = [
        ("POST", "/v1/users/{}/disable", {}),
        ("POST", "/v1/users/{}/enable", None),
        ("GET", "/v1/users/{}/api-keys", None),
        ("POST", "/v1/users/{}/api-keys", {}),
        ("DELETE", "/v1/users/{}", None),
    ]
    for username in ("node-xb", "cites"):
        for method, path, body in calls:
            url = path.format(username)
            answer = await party_node.request(method, url, json=body, headers=admin)
            assert (answer.status_code, answer.json()["code"]) == (404, "EPIX-AUTH-008"), url
    revoke = await party_node.post(f"/v1/api-keys/{peer_key_id}/revoke", headers=admin)
    assert (revoke.status_code, revoke.json()["code"]) == (404, "EPIX-AUTH-008")
    # Nothing changed: XB's node still gets in with its one key.
    whoami = await party_node.get("/v1/auth/whoami", headers={"X-API-Key": peer_key})
    assert whoami.status_code == 200
    with database.read() as session:
        assert len(session.scalars(select(ApiKey)).all()) == 2  # the admin's and XB's node's
    assert len(_denials(database)) == 2 * len(calls) + 1
    # XA's own users it does manage, and the same operations on them succeed.
    for method, path, body in calls:
        answer = await party_node.request(
            method, path.format("xa-officer"), json=body, headers=admin
        )
        assert answer.status_code < 300, (path, answer.text)


async def test_another_partys_user_names_and_keys_cannot_be_told_from_ones_nobody_has(
    party_node: httpx.AsyncClient, database: Database, make_user_in: MakeUser
) -> None:
    """Every answer about XB's node account equals the answer about a name nobody has (status,
    code, message and location, the name aside); the refused attempts are still audited."""
    make_user_in(database, "xa-admin", party="XA", roles=(Role.NODE_ADMIN,))
    make_user_in(database, "node-xb", party="XB", roles=(Role.PEER_NODE,))
    admin = {"X-API-Key": _key(database, "xa-admin")[1]}
    peer_key_id = _key(database, "node-xb")[0]
    calls = [
        ("POST", "/v1/users/{}/disable", {}),
        ("POST", "/v1/users/{}/enable", None),
        ("GET", "/v1/users/{}/api-keys", None),
        ("POST", "/v1/users/{}/api-keys", {}),
        ("DELETE", "/v1/users/{}", None),
    ]

    async def answer(method: str, path: str, body: object, name: str) -> tuple[int, object]:
        got = await party_node.request(method, path.format(name), json=body, headers=admin)
        return got.status_code, got.json()

    for method, path, body in calls:
        existing = await answer(method, path, body, "node-xb")
        nobody = await answer(method, path, body, "no-such-user")
        assert existing[0] == nobody[0] == 404, path
        assert json.dumps(existing[1]).replace("node-xb", "NAME") == json.dumps(nobody[1]).replace(
            "no-such-user", "NAME"
        ), path
    missing_key_id = peer_key_id + 1000
    existing_key = await party_node.post(f"/v1/api-keys/{peer_key_id}/revoke", headers=admin)
    missing_key = await party_node.post(f"/v1/api-keys/{missing_key_id}/revoke", headers=admin)
    assert existing_key.status_code == missing_key.status_code == 404
    assert json.dumps(existing_key.json()).replace(str(peer_key_id), "ID") == json.dumps(
        missing_key.json()
    ).replace(str(missing_key_id), "ID")
    # Both kinds of attempt are in the audit trail, each as what it was (so that the audit
    # row's time tells them apart no more than the answer does).
    denials = _denials(database)
    assert [outcome for _, outcome, _ in denials] == ["EPIX-AUTH-005", "EPIX-AUTH-008"] * (
        len(calls) + 1
    )
    assert [path for _, _, path in denials] == [
        *(path.format(name) for _, path, _ in calls for name in ("node-xb", "no-such-user")),
        f"/v1/api-keys/{peer_key_id}/revoke",
        f"/v1/api-keys/{missing_key_id}/revoke",
    ]
    with database.read() as session:
        details = session.scalars(
            select(AuditEvent.detail).where(
                AuditEvent.action == "auth.denied", AuditEvent.outcome == "EPIX-AUTH-005"
            )
        ).all()
        assert len(details) == len(calls) + 1
        assert all("only XA's users, not XB's" in detail for detail in details)


async def test_a_party_nodes_admin_lists_only_its_own_partys_users(
    party_node: httpx.AsyncClient, database: Database, make_user_in: MakeUser
) -> None:
    make_user_in(database, "xa-admin", party="XA", roles=(Role.NODE_ADMIN,))
    make_user_in(database, "node-xb", party="XB", roles=(Role.PEER_NODE,))
    make_user_in(database, "cites", party=SECRETARIAT_PARTY, roles=(Role.SECRETARIAT,))
    admin = {"X-API-Key": _key(database, "xa-admin")[1]}
    listed = await party_node.get("/v1/users", headers=admin)
    assert [user["username"] for user in listed.json()] == ["xa-admin"]
    for party in ("XB", SECRETARIAT_PARTY):
        answer = await party_node.get("/v1/users", params={"party": party}, headers=admin)
        assert (answer.status_code, answer.json()["code"]) == (403, "EPIX-AUTH-005")
    # The Secretariat still sees every Party's users.
    secretariat = {"X-API-Key": _key(database, "cites")[1]}
    everyone = await party_node.get("/v1/users", headers=secretariat)
    assert len(everyone.json()) == 3


async def test_a_node_admin_of_another_party_manages_nobody_on_a_party_node(
    party_node: httpx.AsyncClient, database: Database, make_user_in: MakeUser
) -> None:
    """An XB node admin on XA's node (made before this rule, or by hand) is refused even XA's
    users: fail closed rather than guess whom it is meant to manage."""
    make_user_in(database, "xb-admin", party="XB", roles=(Role.NODE_ADMIN,))
    make_user_in(database, "xa-officer", party="XA")
    admin = {"X-API-Key": _key(database, "xb-admin")[1]}
    officer_key_id = _key(database, "xa-officer")[0]
    for answer in (
        await party_node.post("/v1/users", json=_new_user("XA", "customs"), headers=admin),
        await party_node.post("/v1/users/xa-officer/api-keys", json={}, headers=admin),
        await party_node.get("/v1/users", headers=admin),
        # Refused whatever is named, so the refusal tells nothing of what exists.
        await party_node.post("/v1/users/no-such-user/api-keys", json={}, headers=admin),
        await party_node.post(f"/v1/api-keys/{officer_key_id}/revoke", headers=admin),
        await party_node.post(f"/v1/api-keys/{officer_key_id + 1000}/revoke", headers=admin),
    ):
        assert (answer.status_code, answer.json()["code"]) == (403, "EPIX-AUTH-005")


async def test_everyone_keeps_their_own_keys_on_a_party_node(
    party_node: httpx.AsyncClient, database: Database, make_user_in: MakeUser
) -> None:
    make_user_in(database, "node-xb", party="XB", roles=(Role.PEER_NODE, Role.NODE_ADMIN))
    key_id, key = _key(database, "node-xb")
    own = {"X-API-Key": key}
    listed = await party_node.get("/v1/users/node-xb/api-keys", headers=own)
    assert [row["id"] for row in listed.json()] == [key_id]
    revoked = await party_node.post(f"/v1/api-keys/{key_id}/revoke", headers=own)
    assert revoked.status_code == 200


async def test_a_hubs_admin_manages_every_partys_users(
    hub: httpx.AsyncClient, sqlite_database: Database, make_user: MakeUser
) -> None:
    make_user("xa-admin", party="XA", roles=(Role.NODE_ADMIN,))
    admin = {"X-API-Key": _key(sqlite_database, "xa-admin")[1]}
    for username, party, role in (
        ("xb-ma", "XB", "management_authority"),
        ("cites", SECRETARIAT_PARTY, "secretariat"),
    ):
        made = await hub.post("/v1/users", json=_new_user(party, role, username), headers=admin)
        assert made.status_code == 201, made.text
    issued = await hub.post("/v1/users/xb-ma/api-keys", json={}, headers=admin)
    assert issued.status_code == 201
    disabled = await hub.post("/v1/users/cites/disable", json={}, headers=admin)
    assert disabled.status_code == 200
    assert len((await hub.get("/v1/users", headers=admin)).json()) == 3


def _failed_outbox_rows(database: Database, *senders: str) -> dict[str, int]:
    """One given-up delivery sent by each of ``senders``: their row ids."""
    ids = {}
    with database.unit_of_work() as session:
        for sender in senders:
            row = outbox.enqueue(
                session,
                kind="endorsement",
                destination_party="XC",
                payload=b"<e/>",
                message_id=f"e-{sender}",
                sender_party=sender,
            )
            row.state = OutboxState.FAILED.value
            ids[sender] = row.id
    return ids


async def test_a_party_nodes_admin_sees_and_resends_only_its_own_partys_outbox(
    party_node: httpx.AsyncClient, database: Database, make_user_in: MakeUser
) -> None:
    make_user_in(database, "xa-admin", party="XA", roles=(Role.NODE_ADMIN,))
    make_user_in(database, "xb-admin", party="XB", roles=(Role.NODE_ADMIN,))
    make_user_in(database, "cites", party=SECRETARIAT_PARTY, roles=(Role.SECRETARIAT,))
    ids = _failed_outbox_rows(database, "XA", "XB", SECRETARIAT_PARTY)
    admin = {"X-API-Key": _key(database, "xa-admin")[1]}

    listed = await party_node.get("/v1/outbox", headers=admin)
    assert [row["sender_party"] for row in listed.json()] == ["XA"]
    missing = ids[SECRETARIAT_PARTY] + 1000
    for verb, path in (("GET", "/v1/outbox/{}"), ("POST", "/v1/outbox/{}/resend")):
        other = await party_node.request(verb, path.format(ids["XB"]), headers=admin)
        nobody = await party_node.request(verb, path.format(missing), headers=admin)
        assert other.status_code == nobody.status_code == 404
        assert json.dumps(other.json()).replace(str(ids["XB"]), "ID") == json.dumps(
            nobody.json()
        ).replace(str(missing), "ID")
    # The refused resends are audited as what they were; the refused reads, like any read, not.
    assert _denials(database) == [
        ("xa-admin", "EPIX-AUTH-005", f"/v1/outbox/{ids['XB']}/resend"),
        ("xa-admin", "EPIX-DLV-009", f"/v1/outbox/{missing}/resend"),
    ]
    with database.read() as session:
        assert session.get_one(OutboxMessage, ids["XB"]).state == OutboxState.FAILED.value
    resent = await party_node.post(f"/v1/outbox/{ids['XA']}/resend", headers=admin)
    assert (resent.status_code, resent.json()["state"]) == (200, "pending")

    # An admin of another Party on XA's node sees what their own Party sent, as anyone does,
    # and resends nothing; the Secretariat, as before, sees what it sent.
    for username, party in (("xb-admin", "XB"), ("cites", SECRETARIAT_PARTY)):
        caller = {"X-API-Key": _key(database, username)[1]}
        rows = (await party_node.get("/v1/outbox", headers=caller)).json()
        assert [row["sender_party"] for row in rows] == [party], username
    xb_admin = {"X-API-Key": _key(database, "xb-admin")[1]}
    refused = await party_node.post(f"/v1/outbox/{ids['XB']}/resend", headers=xb_admin)
    assert (refused.status_code, refused.json()["code"]) == (403, "EPIX-AUTH-005")  # any row
    missing_row = await party_node.post(f"/v1/outbox/{missing}/resend", headers=xb_admin)
    assert (missing_row.status_code, missing_row.json()["code"]) == (403, "EPIX-AUTH-005")


async def test_a_hubs_admin_sees_and_resends_every_partys_outbox(
    hub: httpx.AsyncClient, sqlite_database: Database, make_user: MakeUser
) -> None:
    make_user("xa-admin", party="XA", roles=(Role.NODE_ADMIN,))
    make_user("xa-officer", party="XA")
    ids = _failed_outbox_rows(sqlite_database, "XA", "XB", SECRETARIAT_PARTY)
    admin = {"X-API-Key": _key(sqlite_database, "xa-admin")[1]}
    listed = await hub.get("/v1/outbox", headers=admin)
    assert sorted(row["sender_party"] for row in listed.json()) == [SECRETARIAT_PARTY, "XA", "XB"]
    assert (await hub.get(f"/v1/outbox/{ids['XB']}", headers=admin)).status_code == 200
    assert (await hub.post(f"/v1/outbox/{ids['XB']}/resend", headers=admin)).status_code == 200
    officer = {"X-API-Key": _key(sqlite_database, "xa-officer")[1]}
    mine = await hub.get("/v1/outbox", headers=officer)
    assert [row["sender_party"] for row in mine.json()] == ["XA"]


async def test_a_name_another_partys_user_has_is_refused_without_saying_it_exists(
    party_node: httpx.AsyncClient, database: Database, make_user_in: MakeUser
) -> None:
    """On XA's node, a name XB's node account or the Secretariat's user has cannot be given to
    a new XA user, but the answer (409 EPIX-AUTH-013) names no account or Party and does not
    say the name exists, as the 404s for other Parties' users do not; it is audited as the
    EPIX-AUTH-005 it stands for. A name one of XA's own users has is EPIX-AUTH-007, as it
    always was: the admin sees those users anyway."""
    make_user_in(database, "xa-admin", party="XA", roles=(Role.NODE_ADMIN,))
    make_user_in(database, "xa-officer", party="XA")
    make_user_in(database, "node-xb", party="XB", roles=(Role.PEER_NODE,))
    make_user_in(database, "cites", party=SECRETARIAT_PARTY, roles=(Role.SECRETARIAT,))
    admin = {"X-API-Key": _key(database, "xa-admin")[1]}
    answers = [
        await party_node.post("/v1/users", json=_new_user("XA", "customs", name), headers=admin)
        for name in ("node-xb", "cites")
    ]
    for answer, name in zip(answers, ("node-xb", "cites"), strict=True):
        assert (answer.status_code, answer.json()["code"]) == (409, "EPIX-AUTH-013")
        assert answer.json()["errors"] == [
            {
                "code": "EPIX-AUTH-013",
                "message": f"The user name '{name}' cannot be used on this node; choose another.",
                "location": "username",
                "severity": "error",
                "line": None,
            }
        ]
        for revealing in ("XB", SECRETARIAT_PARTY, "exist", "peer"):
            assert revealing not in answer.text, revealing
    own = await party_node.post(
        "/v1/users", json=_new_user("XA", "customs", "xa-officer"), headers=admin
    )
    assert (own.status_code, own.json()["code"]) == (409, "EPIX-AUTH-007")
    assert _denials(database) == [("xa-admin", "EPIX-AUTH-005", "/v1/users")] * 2
    with database.read() as session:
        assert [user.party for user in service.list_users(session)] == [
            SECRETARIAT_PARTY,
            "XA",
            "XA",
            "XB",
        ]


async def test_a_hubs_admin_is_told_any_taken_name_exists(
    hub: httpx.AsyncClient, sqlite_database: Database, make_user: MakeUser
) -> None:
    make_user("xa-admin", party="XA", roles=(Role.NODE_ADMIN,))
    make_user("node-xb", party="XB", roles=(Role.PEER_NODE,))
    admin = {"X-API-Key": _key(sqlite_database, "xa-admin")[1]}
    taken = await hub.post("/v1/users", json=_new_user("XC", "customs", "node-xb"), headers=admin)
    assert (taken.status_code, taken.json()["code"]) == (409, "EPIX-AUTH-007")


async def test_a_name_taken_while_the_user_is_being_created_gets_the_same_answers(
    party_node: httpx.AsyncClient, database: Database, make_user_in: MakeUser
) -> None:
    """XB's node account is being made (by the operator) in a transaction that commits only
    after XA's admin asked for the same name: the admin's request, which found the name free,
    meets the name at its insert. It gets the answer it would have got a moment later (409
    EPIX-AUTH-013, audited), not a 500; so does a name one of XA's own users takes (409
    EPIX-AUTH-007)."""
    make_user_in(database, "xa-admin", party="XA", roles=(Role.NODE_ADMIN,))
    admin = {"X-API-Key": _key(database, "xa-admin")[1]}
    cases = (("node-xb", "XB", "EPIX-AUTH-013"), ("xa-new", "XA", "EPIX-AUTH-007"))
    for name, party, code in cases:
        inserted, commit = threading.Event(), threading.Event()
        making = threading.Thread(
            target=_make_user_committing_later, args=(database, name, party, inserted, commit)
        )
        making.start()
        assert inserted.wait(30)
        threading.Timer(1.0, commit.set).start()  # while the admin's insert waits for the row
        body = _new_user("XA", "customs", name)
        answer = await party_node.post("/v1/users", json=body, headers=admin)
        making.join(30)
        assert (answer.status_code, answer.json()["code"]) == (409, code), answer.text
    assert _denials(database) == [("xa-admin", "EPIX-AUTH-005", "/v1/users")]


def _make_user_committing_later(
    database: Database, name: str, party: str, inserted: threading.Event, commit: threading.Event
) -> None:
    with database.unit_of_work() as session:
        service.create_user(
            session, username=name, party=party, authority="A", roles=[Role.CUSTOMS]
        )
        inserted.set()
        commit.wait(30)


async def test_a_name_or_party_with_a_trailing_line_break_is_refused(
    hub: httpx.AsyncClient, sqlite_database: Database, make_user: MakeUser
) -> None:
    """The checks ended in ``$``, which also matches before a final line break: "node-xb\\n",
    a name shown exactly as XB's node account "node-xb" yet not taken by it (so neither
    EPIX-AUTH-007 nor EPIX-AUTH-013), and a Party "XA\\n" that no scoping equals XA, were
    stored."""
    make_user("xa-admin", party="XA", roles=(Role.NODE_ADMIN,))
    make_user("node-xb", party="XB", roles=(Role.PEER_NODE,))
    admin = {"X-API-Key": _key(sqlite_database, "xa-admin")[1]}
    for body, location in (
        (_new_user("XA", "customs", "node-xb\n"), "username"),
        (_new_user("XA\n", "customs", "xa-customs"), "party"),
    ):
        answer = await hub.post("/v1/users", json=body, headers=admin)
        assert answer.status_code == 422, answer.text
        assert answer.json()["errors"][0]["code"] == "EPIX-REQ-004", answer.text
        assert answer.json()["errors"][0]["location"] == location
    with sqlite_database.read() as session:
        assert [user.username for user in service.list_users(session)] == ["xa-admin", "node-xb"]


async def test_another_partys_user_key_or_row_costs_what_one_nobody_has_costs(
    party_node: httpx.AsyncClient, database: Database, make_user_in: MakeUser
) -> None:
    """The answers are the same (above) and so are the transactions and writes behind them: the
    attempt on XB's account is audited, so the attempt on a name nobody has is too; else the
    time the audit row takes would tell which names exist. Names and ids of the same length,
    so that only the outcome in the audit row differs."""
    make_user_in(database, "xa-admin", party="XA", roles=(Role.NODE_ADMIN,))
    make_user_in(database, "node-xb", party="XB", roles=(Role.PEER_NODE,))
    admin = {"X-API-Key": _key(database, "xa-admin")[1]}
    peer_key_id = _key(database, "node-xb")[0]
    ids = _failed_outbox_rows(database, "XB")
    calls = [
        ("POST", "/v1/users/{}/disable", {}, "node-xb", "node-xc"),
        ("POST", "/v1/users/{}/enable", None, "node-xb", "node-xc"),
        ("GET", "/v1/users/{}/api-keys", None, "node-xb", "node-xc"),
        ("POST", "/v1/users/{}/api-keys", {}, "node-xb", "node-xc"),
        ("DELETE", "/v1/users/{}", None, "node-xb", "node-xc"),
        ("POST", "/v1/api-keys/{}/revoke", None, str(peer_key_id), str(peer_key_id + 7)),
        ("POST", "/v1/outbox/{}/resend", None, str(ids["XB"]), str(ids["XB"] + 7)),
    ]
    different = []
    for method, path, body, theirs, nobodys in calls:
        answers = []
        for name in (theirs, nobodys):
            with database_work(database) as seen:
                got = await party_node.request(method, path.format(name), json=body, headers=admin)
            answers.append(
                (got.status_code, got.content.replace(name.encode(), b"NAME"), writes(seen))
            )
        if answers[0] != answers[1]:
            different.append(f"{method} {path}: {answers[0]} != {answers[1]}")
    assert not different, different
    # Both are on record, each as what it was.
    outcomes = [outcome for _, outcome, _ in _denials(database)]
    assert outcomes == ["EPIX-AUTH-005", "EPIX-AUTH-008"] * 6 + ["EPIX-AUTH-005", "EPIX-DLV-009"]
