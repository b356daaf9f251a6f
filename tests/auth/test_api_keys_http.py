"""API keys over HTTP: valid, wrong, expired, revoked, and a disabled user's key."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text, update

from epix.api.app import create_app
from epix.auth import service
from epix.auth.models import ApiKey
from epix.auth.principal import Role
from epix.db import Database
from epix.db.base import utcnow
from epix.settings import Settings

from .conftest import MakeUser

pytestmark = pytest.mark.anyio


def _issue(database: Database, username: str) -> tuple[int, str]:
    with database.unit_of_work() as session:
        key, raw = service.issue_api_key(session, service.get_user(session, username))
        return key.id, raw


async def test_valid_key_in_bearer_or_x_api_key_identifies_the_person(
    client: httpx.AsyncClient, sqlite_database: Database, make_user: MakeUser
) -> None:
    make_user("ma-officer", party="XA")
    _, raw = _issue(sqlite_database, "ma-officer")
    for headers in ({"Authorization": f"Bearer {raw}"}, {"X-API-Key": raw}):
        response = await client.get("/v1/auth/whoami", headers=headers)
        assert response.status_code == 200
        body = response.json()
        assert (body["username"], body["party"], body["via_api_key"]) == ("ma-officer", "XA", True)
        assert body["roles"] == ["management_authority"]


async def test_no_credentials_is_auth_001(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/auth/whoami")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "EPIX-AUTH-001"


@pytest.mark.parametrize(
    "header",
    [
        "Bearer epix_0123456789abcdef_notthekeynotthekeynotthekey",
        "Bearer garbage",
        "Bearer " + "x" * 5000,
    ],
)
async def test_wrong_key_is_auth_002(
    client: httpx.AsyncClient, sqlite_database: Database, make_user: MakeUser, header: str
) -> None:
    make_user()
    _issue(sqlite_database, "ma-officer")
    response = await client.get("/v1/auth/whoami", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["code"] == "EPIX-AUTH-002"


async def test_right_prefix_wrong_secret_is_auth_002(
    client: httpx.AsyncClient, sqlite_database: Database, make_user: MakeUser
) -> None:
    make_user()
    _, raw = _issue(sqlite_database, "ma-officer")
    forged = raw[:-4] + ("AAAA" if not raw.endswith("AAAA") else "BBBB")
    response = await client.get("/v1/auth/whoami", headers={"X-API-Key": forged})
    assert response.json()["code"] == "EPIX-AUTH-002"


async def test_other_authorization_scheme_is_auth_001(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/auth/whoami", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert response.status_code == 401
    assert response.json()["code"] == "EPIX-AUTH-001"


async def test_expired_key_is_auth_003(
    client: httpx.AsyncClient, sqlite_database: Database, make_user: MakeUser
) -> None:
    make_user()
    key_id, raw = _issue(sqlite_database, "ma-officer")
    with sqlite_database.unit_of_work() as session:
        session.execute(
            update(ApiKey).where(ApiKey.id == key_id).values(expires_at=utcnow() - timedelta(1))
        )
    response = await client.get("/v1/auth/whoami", headers={"X-API-Key": raw})
    assert response.status_code == 401
    assert response.json()["code"] == "EPIX-AUTH-003"


async def test_revoked_key_is_auth_003(
    client: httpx.AsyncClient, sqlite_database: Database, make_user: MakeUser
) -> None:
    make_user()
    key_id, raw = _issue(sqlite_database, "ma-officer")
    assert (await client.get("/v1/auth/whoami", headers={"X-API-Key": raw})).status_code == 200
    revoked = await client.post(f"/v1/api-keys/{key_id}/revoke", headers={"X-API-Key": raw})
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    response = await client.get("/v1/auth/whoami", headers={"X-API-Key": raw})
    assert response.json()["code"] == "EPIX-AUTH-003"


async def test_disabled_users_key_is_auth_006(
    client: httpx.AsyncClient, sqlite_database: Database, make_user: MakeUser
) -> None:
    make_user()
    _, raw = _issue(sqlite_database, "ma-officer")
    with sqlite_database.unit_of_work() as session:
        service.disable_user(session, service.get_user(session, "ma-officer"), reason="left")
    response = await client.get("/v1/auth/whoami", headers={"X-API-Key": raw})
    assert response.status_code == 403
    assert response.json()["code"] == "EPIX-AUTH-006"


async def test_only_the_hash_of_a_key_is_stored(
    sqlite_database: Database, make_user: MakeUser
) -> None:
    make_user()
    _, raw = _issue(sqlite_database, "ma-officer")
    with sqlite_database.engine.connect() as connection:
        dump = "\n".join(connection.connection.iterdump())  # type: ignore[attr-defined]
    assert raw not in dump
    assert raw.split("_")[1] in dump  # the public prefix is how the key is found


async def test_admin_issues_key_over_http_shown_once(
    client: httpx.AsyncClient, sqlite_database: Database, make_user: MakeUser
) -> None:
    make_user("admin", party="XA", roles=(Role.NODE_ADMIN,))
    make_user("customs-1", party="XB", roles=(Role.CUSTOMS,))
    _, admin_key = _issue(sqlite_database, "admin")
    issued = await client.post(
        "/v1/users/customs-1/api-keys",
        json={"label": "border system", "expires_days": 30},
        headers={"X-API-Key": admin_key},
    )
    assert issued.status_code == 201
    raw = issued.json()["key"]
    whoami = await client.get("/v1/auth/whoami", headers={"X-API-Key": raw})
    assert whoami.json()["username"] == "customs-1"
    listed = await client.get("/v1/users/customs-1/api-keys", headers={"X-API-Key": admin_key})
    assert [key["label"] for key in listed.json()] == ["border system"]
    assert "key" not in listed.json()[0]


async def test_another_users_keys_and_a_missing_users_keys_look_the_same(
    client: httpx.AsyncClient, sqlite_database: Database, make_user: MakeUser
) -> None:
    """Anyone but a node admin is refused alike, so user names cannot be probed."""
    make_user("ma-officer", party="XA")
    make_user("other-officer", party="XA")
    _, raw = _issue(sqlite_database, "ma-officer")
    caller = {"Authorization": f"Bearer {raw}"}
    own = await client.get("/v1/users/ma-officer/api-keys", headers=caller)
    assert own.status_code == 200 and len(own.json()) == 1
    answers = [
        await client.get(f"/v1/users/{name}/api-keys", headers=caller)
        for name in ("other-officer", "nobody-here")
    ]
    assert [a.status_code for a in answers] == [403, 403]
    assert answers[0].json() == answers[1].json()
    assert answers[0].json()["code"] == "EPIX-AUTH-004"


async def test_refused_credentials_are_audited_and_never_stored(
    client: httpx.AsyncClient, sqlite_database: Database, make_user: MakeUser
) -> None:
    """A wrong, revoked or malformed credential is evidence of an attempt, as a failed login
    is; before, only password logins left a trace. A request with no credential leaves none."""
    make_user("officer", party="XB")
    key_id, raw = _issue(sqlite_database, "officer")
    wrong = raw[:-4] + "AAAA"
    await client.get("/v1/auth/whoami")  # nothing presented
    await client.get("/v1/auth/whoami", headers={"X-API-Key": wrong, "User-Agent": "probe/1"})
    await client.get("/v1/auth/whoami", headers={"Authorization": f"Basic {raw}"})
    with sqlite_database.unit_of_work() as session:
        session.execute(update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=utcnow()))
    await client.get("/v1/auth/whoami", headers={"Authorization": f"Bearer {raw}"})
    with sqlite_database.engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT action, outcome, path, headers, detail FROM audit_events"
                " WHERE action = 'auth.refused' ORDER BY sequence"
            )
        ).all()
        everything = repr(connection.execute(text("SELECT * FROM audit_events")).all())
    assert [(row.outcome, row.path, row.detail) for row in rows] == [
        ("EPIX-AUTH-002", "/v1/auth/whoami", '{"credential":"api_key"}'),
        ("EPIX-AUTH-001", "/v1/auth/whoami", '{"credential":"api_key"}'),
        ("EPIX-AUTH-003", "/v1/auth/whoami", '{"credential":"api_key"}'),
    ]
    assert json.loads(rows[0].headers)["user-agent"] == "probe/1"
    for secret in (raw, wrong, raw.split("_", 2)[2]):
        assert secret not in everything


async def test_a_flood_of_made_up_keys_is_throttled_and_audited_once_per_stretch(
    tmp_path: Path, database: Database, make_user_in: MakeUser
) -> None:
    """Each refused credential used to add an audit row, so anyone could grow the audit trail
    without limit with made-up keys. Past the limit per address the answer is 429 AUTH-011 and
    the whole stretch is one ``auth.throttled`` row; a valid key from there still works."""
    settings = Settings(
        data_dir=tmp_path / "data",
        node_base_url="http://testserver",
        refused_credential_max=3,
        refused_credential_window_seconds=60,
    )
    app = create_app(settings, database)
    make_user_in(database, "officer", party="XB")
    _, raw = _issue(database, "officer")
    made_up = {"Authorization": "Bearer epix_0123456789abcdef_" + "A" * 43}

    def client_from(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://testserver")

    async with client_from("192.0.2.66") as attacker:
        answers = [await attacker.get("/v1/inbox", headers=made_up) for _ in range(20)]
        assert [a.json()["code"] for a in answers] == ["EPIX-AUTH-002"] * 3 + ["EPIX-AUTH-011"] * 17
        assert all(0 < int(a.headers["retry-after"]) <= 60 for a in answers[3:])
        assert answers[3].status_code == 429
        mine = await attacker.get("/v1/auth/whoami", headers={"Authorization": f"Bearer {raw}"})
        assert mine.status_code == 200
    async with client_from("198.51.100.7") as elsewhere:
        assert (await elsewhere.get("/v1/inbox", headers=made_up)).status_code == 401

    with database.engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT action, outcome, remote_addr, detail FROM audit_events"
                " WHERE action LIKE 'auth.%' ORDER BY sequence"
            )
        ).all()
    assert [(r.action, r.outcome, r.remote_addr) for r in rows] == [
        ("auth.refused", "EPIX-AUTH-002", "192.0.2.66"),
        ("auth.refused", "EPIX-AUTH-002", "192.0.2.66"),
        ("auth.refused", "EPIX-AUTH-002", "192.0.2.66"),
        ("auth.throttled", "EPIX-AUTH-011", "192.0.2.66"),
        ("auth.refused", "EPIX-AUTH-002", "198.51.100.7"),
    ]
    assert json.loads(rows[3].detail) == {"credential": "api_key", "refused_code": "EPIX-AUTH-002"}
