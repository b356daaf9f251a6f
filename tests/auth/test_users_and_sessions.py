"""Users, password login with a session cookie, roles and Party scoping, Secretariat notices."""

from __future__ import annotations

import logging
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI
from sqlalchemy import select, text

from epix.api.security import require_roles
from epix.auth import service
from epix.auth.principal import SECRETARIAT_PARTY, Principal, Role
from epix.auth.scoping import ensure_own_party, ensure_role, may_see_party
from epix.db import Database
from epix.errors import EpixError
from epix.exchange.models import InboxEntry

from .conftest import PASSWORD, MakeUser

pytestmark = pytest.mark.anyio
CustomsOnly = Annotated[Principal, Depends(require_roles(Role.CUSTOMS))]


async def _login(
    client: httpx.AsyncClient, username: str, password: str = PASSWORD
) -> httpx.Response:
    return await client.post("/v1/auth/login", json={"username": username, "password": password})


async def test_password_login_sets_a_session_cookie_that_authenticates(
    client: httpx.AsyncClient, make_user: MakeUser
) -> None:
    make_user("officer", party="XB", roles=(Role.CUSTOMS,))
    response = await _login(client, "officer")
    assert response.status_code == 200
    assert "epix_session" in response.cookies
    whoami = await client.get("/v1/auth/whoami")
    assert whoami.status_code == 200
    assert (whoami.json()["username"], whoami.json()["via_api_key"]) == ("officer", False)
    assert (await client.post("/v1/auth/logout")).status_code == 204
    assert (await client.get("/v1/auth/whoami")).json()["code"] == "EPIX-AUTH-001"


@pytest.mark.parametrize(
    ("username", "password"), [("officer", "wrong password!!"), ("nobody", PASSWORD)]
)
async def test_wrong_password_or_unknown_user_is_auth_002(
    client: httpx.AsyncClient, make_user: MakeUser, username: str, password: str
) -> None:
    make_user("officer")
    response = await _login(client, username, password)
    assert response.status_code == 401
    assert response.json()["code"] == "EPIX-AUTH-002"
    assert "epix_session" not in response.cookies


async def test_disabling_a_user_ends_their_web_session(
    client: httpx.AsyncClient, sqlite_database: Database, make_user: MakeUser
) -> None:
    make_user("officer")
    assert (await _login(client, "officer")).status_code == 200
    with sqlite_database.unit_of_work() as session:
        service.disable_user(session, service.get_user(session, "officer"))
    response = await client.get("/v1/auth/whoami")
    assert response.status_code == 401
    assert response.json()["code"] == "EPIX-AUTH-009"
    assert (await _login(client, "officer")).json()["code"] == "EPIX-AUTH-006"


async def test_logging_out_ends_the_session_even_for_a_kept_copy_of_its_cookie(
    client: httpx.AsyncClient, make_user: MakeUser
) -> None:
    """The cookie is signed data, not a server-side id: clearing it in the browser alone would
    leave a copy taken before the logout (shared border-post PC, proxy log) valid for hours."""
    make_user("officer")
    assert (await _login(client, "officer")).status_code == 200
    kept = client.cookies["epix_session"]
    assert (await client.post("/v1/auth/logout")).status_code == 204
    client.cookies.set("epix_session", kept)
    response = await client.get("/v1/auth/whoami")
    assert response.status_code == 401
    assert response.json()["code"] == "EPIX-AUTH-009"
    client.cookies.clear()
    assert (await _login(client, "officer")).status_code == 200
    assert (await client.get("/v1/auth/whoami")).status_code == 200


async def test_cross_site_write_with_session_cookie_is_refused(
    client: httpx.AsyncClient, make_user: MakeUser
) -> None:
    make_user("admin", roles=(Role.NODE_ADMIN,))
    await _login(client, "admin")
    response = await client.post(
        "/v1/users",
        json={"username": "x", "party": "XA", "authority": "MA", "roles": ["customs"]},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert response.json()["code"] == "EPIX-AUTH-012"


async def test_same_origin_write_with_session_cookie_is_allowed(
    client: httpx.AsyncClient, make_user: MakeUser
) -> None:
    make_user("admin", roles=(Role.NODE_ADMIN,))
    await _login(client, "admin")
    response = await client.post(
        "/v1/users",
        json={
            "username": "new-officer",
            "party": "xb",
            "authority": "XB Customs",
            "roles": ["customs"],
        },
        headers={"Origin": "http://testserver"},
    )
    assert response.status_code == 201
    assert (response.json()["party"], response.json()["roles"]) == ("XB", ["customs"])


async def test_login_and_logout_are_audited_without_credentials(
    client: httpx.AsyncClient,
    sqlite_database: Database,
    make_user: MakeUser,
    caplog: pytest.LogCaptureFixture,
) -> None:
    make_user("officer")
    with sqlite_database.unit_of_work() as session:
        _, raw_key = service.issue_api_key(session, service.get_user(session, "officer"))
    caplog.set_level(logging.DEBUG)
    await _login(client, "officer", "a wrong password")
    await _login(client, "officer")
    cookie = client.cookies["epix_session"]
    await client.get("/v1/auth/whoami", headers={"X-API-Key": raw_key})
    await client.get("/v1/auth/whoami", headers={"Authorization": f"Bearer {raw_key}"})
    await client.post("/v1/auth/logout")
    with sqlite_database.engine.connect() as connection:
        rows = connection.execute(
            text("SELECT action, outcome, actor_username, headers, detail FROM audit_events")
        ).all()
    logins = [(row.action, row.outcome, row.actor_username) for row in rows if "log" in row.action]
    assert logins == [
        ("login", "EPIX-AUTH-002", None),
        ("login", "ok", "officer"),
        ("logout", "ok", "officer"),
    ]
    everything = repr(rows) + caplog.text
    for secret in (PASSWORD, "a wrong password", raw_key, cookie):
        assert secret not in everything


async def test_a_password_or_key_typed_as_the_user_name_is_not_kept(
    client: httpx.AsyncClient,
    sqlite_database: Database,
    make_user: MakeUser,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failed login used to keep whatever was typed as the user name for years in the audit
    trail: often a password, or an API key pasted into the wrong field. Only the name of an
    existing user is kept now."""
    make_user("officer")
    with sqlite_database.unit_of_work() as session:
        _, raw_key = service.issue_api_key(session, service.get_user(session, "officer"))
    caplog.set_level(logging.DEBUG)
    for typed in (raw_key, PASSWORD, "officer"):
        assert (await _login(client, typed, "a wrong password")).status_code == 401
    with sqlite_database.engine.connect() as connection:
        details = connection.execute(
            text("SELECT detail FROM audit_events WHERE action = 'login' ORDER BY sequence")
        ).scalars()
        assert list(details) == ['{"unknown_username":true}'] * 2 + ['{"username":"officer"}']
        everything = repr(connection.execute(text("SELECT * FROM audit_events")).all())
    for secret in (raw_key, raw_key.split("_", 2)[2], PASSWORD):
        assert secret not in everything + caplog.text


async def test_require_roles_admits_holders_and_refuses_others_with_auth_004(
    app: FastAPI, client: httpx.AsyncClient, sqlite_database: Database, make_user: MakeUser
) -> None:
    @app.get("/v1/test/customs-only")
    def customs_only(principal: CustomsOnly) -> dict[str, str]:
        return {"party": principal.party}

    make_user("ma", party="XA", roles=(Role.MANAGEMENT_AUTHORITY,))
    make_user("customs", party="XB", roles=(Role.CUSTOMS,))
    with sqlite_database.unit_of_work() as session:
        _, ma_key = service.issue_api_key(session, service.get_user(session, "ma"))
        _, customs_key = service.issue_api_key(session, service.get_user(session, "customs"))
    refused = await client.get("/v1/test/customs-only", headers={"X-API-Key": ma_key})
    assert refused.status_code == 403
    assert refused.json()["code"] == "EPIX-AUTH-004"
    admitted = await client.get("/v1/test/customs-only", headers={"X-API-Key": customs_key})
    assert admitted.json() == {"party": "XB"}


async def test_only_node_admins_manage_users(
    client: httpx.AsyncClient, sqlite_database: Database, make_user: MakeUser
) -> None:
    make_user("ma", roles=(Role.MANAGEMENT_AUTHORITY,))
    with sqlite_database.unit_of_work() as session:
        _, key = service.issue_api_key(session, service.get_user(session, "ma"))
    response = await client.post("/v1/users/ma/disable", json={}, headers={"X-API-Key": key})
    assert response.json()["code"] == "EPIX-AUTH-004"


def _principal(party: str, *roles: Role) -> Principal:
    return Principal(1, "someone", party, "authority", frozenset(roles))


def test_party_scoping_helpers() -> None:
    ma = _principal("XA", Role.MANAGEMENT_AUTHORITY)
    ensure_own_party(ma, "xa")
    with pytest.raises(EpixError) as refusal:
        ensure_own_party(ma, "XB")
    assert refusal.value.findings[0].code == "EPIX-AUTH-005"
    with pytest.raises(EpixError) as refusal:
        ensure_role(ma, Role.SECRETARIAT, Role.NODE_ADMIN)
    assert refusal.value.findings[0].code == "EPIX-AUTH-004"
    assert may_see_party(ma, "XA") and not may_see_party(ma, "XB")
    assert may_see_party(_principal(SECRETARIAT_PARTY, Role.SECRETARIAT), "XB")


def test_disabling_or_removing_a_user_notifies_the_secretariat(
    sqlite_database: Database, make_user: MakeUser
) -> None:
    make_user("leaver", party="XA")
    make_user("gone", party="XB")
    with sqlite_database.unit_of_work() as session:
        service.disable_user(session, service.get_user(session, "leaver"), reason="left the MA")
        service.remove_user(session, service.get_user(session, "gone"))
        service.disable_user(session, service.get_user(session, "leaver"))  # already: no repeat
    with sqlite_database.unit_of_work() as session:
        notices = session.scalars(
            select(InboxEntry).where(InboxEntry.recipient_party == SECRETARIAT_PARTY)
        ).all()
        assert [entry.kind for entry in notices] == ["user_disabled", "user_removed"]
        assert "leaver" in notices[0].subject
        assert b"reason: left the MA" in notices[0].payload


@pytest.mark.parametrize(
    ("party", "roles", "location"),
    [
        ("XAA", (Role.CUSTOMS,), "party"),
        ("XA", (), "roles"),
        ("XA", (Role.SECRETARIAT,), "roles"),
    ],
)
def test_invalid_users_are_refused_with_a_location(
    sqlite_database: Database, party: str, roles: tuple[Role, ...], location: str
) -> None:
    with sqlite_database.unit_of_work() as session, pytest.raises(EpixError) as refusal:
        service.create_user(session, username="u", party=party, authority="MA", roles=roles)
    assert refusal.value.findings[0].location == location


def test_duplicate_username_is_auth_007(sqlite_database: Database, make_user: MakeUser) -> None:
    make_user("twin")
    with pytest.raises(EpixError) as refusal:
        make_user("twin")
    assert refusal.value.findings[0].code == "EPIX-AUTH-007"


async def test_a_caller_refused_for_their_role_is_audited(
    app: FastAPI, client: httpx.AsyncClient, sqlite_database: Database, make_user: MakeUser
) -> None:
    """An authenticated attempt beyond one's rights left no trace (only the registry audited
    its own refusals): an MA on a customs route, an administrator submitting a permit."""

    @app.get("/v1/test/customs-only")
    def customs_only(principal: CustomsOnly) -> dict[str, str]:
        return {"party": principal.party}

    make_user("ma", party="XA", roles=(Role.MANAGEMENT_AUTHORITY,))
    make_user("admin", party="XA", roles=(Role.NODE_ADMIN,))
    with sqlite_database.unit_of_work() as session:
        _, ma_key = service.issue_api_key(session, service.get_user(session, "ma"))
        _, admin_key = service.issue_api_key(session, service.get_user(session, "admin"))
    refused = await client.get("/v1/test/customs-only", headers={"X-API-Key": ma_key})
    assert refused.status_code == 403
    submitted = await client.post(
        "/v1/messages",
        content=b"<Permit/>",
        headers={"X-API-Key": admin_key, "Content-Type": "application/xml"},
    )
    assert submitted.json()["code"] == "EPIX-AUTH-004"
    with sqlite_database.engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT actor_username, party, outcome, method, path, detail FROM audit_events"
                " WHERE action = 'auth.denied' ORDER BY sequence"
            )
        ).all()
    assert [tuple(row) for row in rows] == [
        (
            "ma",
            "XA",
            "EPIX-AUTH-004",
            "GET",
            "/v1/test/customs-only",
            '{"roles":["management_authority"]}',
        ),
        ("admin", "XA", "EPIX-AUTH-004", "POST", "/v1/messages", '{"roles":["node_admin"]}'),
    ]
