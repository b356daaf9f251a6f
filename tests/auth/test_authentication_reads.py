"""Authentication is one read: every refusal on both backends, and no wait for SQLite's writer."""

from __future__ import annotations

import threading
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update

from epix.auth import service
from epix.auth.models import ApiKey, User
from epix.auth.principal import Role
from epix.db import Database
from epix.db.base import utcnow
from epix.errors import EpixError

from .conftest import PASSWORD, MakeUser

_HOLD_SECONDS = 5.0


def _person(database: Database, username: str = "officer") -> tuple[int, str, int]:
    """A customs officer of XB with an API key: (user id, raw key, key id)."""
    with database.unit_of_work() as session:
        user = service.create_user(
            session, username=username, party="XB", authority="XB Customs", roles=[Role.CUSTOMS]
        )
        key, raw = service.issue_api_key(session, user)
        return user.id, raw, key.id


def _key_refusal(database: Database, raw_key: str) -> str:
    with database.read() as session, pytest.raises(EpixError) as refusal:
        service.authenticate_api_key(session, raw_key)
    return refusal.value.findings[0].code


def _session_refusal(database: Database, user_id: int, epoch: int) -> str:
    with database.read() as session, pytest.raises(EpixError) as refusal:
        service.authenticate_session(session, user_id, epoch)
    return refusal.value.findings[0].code


def test_an_api_key_names_its_person_and_every_refusal_keeps_its_code(database: Database) -> None:
    user_id, raw, key_id = _person(database)
    with database.read() as session:
        principal = service.authenticate_api_key(session, f"  {raw} ")
    with database.unit_of_work() as session:
        expected = service.principal_of(service.get_user(session, "officer"), api_key_id=key_id)
    assert principal == expected
    assert (principal.user_id, principal.party, principal.roles) == (user_id, "XB", {Role.CUSTOMS})

    prefix = raw.split("_")[1]
    assert _key_refusal(database, raw[:-1] + ("A" if raw[-1] != "A" else "B")) == "EPIX-AUTH-002"
    assert _key_refusal(database, raw.replace(prefix, "0" * 16)) == "EPIX-AUTH-002"
    assert _key_refusal(database, "garbage") == "EPIX-AUTH-002"

    with database.unit_of_work() as session:
        session.execute(update(ApiKey).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert _key_refusal(database, raw) == "EPIX-AUTH-003"
    with database.unit_of_work() as session:
        session.execute(update(ApiKey).values(expires_at=None, revoked_at=utcnow()))
    assert _key_refusal(database, raw) == "EPIX-AUTH-003"
    with database.unit_of_work() as session:
        session.execute(update(ApiKey).values(revoked_at=None))
        session.execute(update(User).values(disabled_at=utcnow()))
    assert _key_refusal(database, raw) == "EPIX-AUTH-006"
    with database.unit_of_work() as session:
        session.execute(update(User).values(disabled_at=None, removed_at=utcnow()))
    assert _key_refusal(database, raw) == "EPIX-AUTH-006"


def test_a_web_session_names_its_person_until_it_ends(database: Database) -> None:
    user_id, _, _ = _person(database)
    with database.read() as session:
        principal = service.authenticate_session(session, user_id, 0)
    with database.unit_of_work() as session:
        assert principal == service.principal_of(service.get_user(session, "officer"))

    assert _session_refusal(database, user_id, 1) == "EPIX-AUTH-009"
    assert _session_refusal(database, user_id + 1, 0) == "EPIX-AUTH-009"
    with database.unit_of_work() as session:
        session.execute(update(User).values(disabled_at=utcnow()))  # epoch left as it was
    assert _session_refusal(database, user_id, 0) == "EPIX-AUTH-006"


@pytest.mark.anyio
async def test_authentication_goes_on_while_a_writer_holds_sqlite(
    client: httpx.AsyncClient, sqlite_database: Database, make_user: MakeUser
) -> None:
    make_user("officer", party="XB", roles=(Role.CUSTOMS,))
    with sqlite_database.unit_of_work() as session:
        _, raw = service.issue_api_key(session, service.get_user(session, "officer"))
    login = {"username": "officer", "password": PASSWORD}
    assert (await client.post("/v1/auth/login", json=login)).status_code == 200

    holding, done = threading.Event(), threading.Event()
    released_by_us: list[bool] = []

    def writer() -> None:
        with sqlite_database.unit_of_work() as session:
            session.execute(update(User).values(full_name="held"))  # takes the write lock
            holding.set()
            released_by_us.append(done.wait(_HOLD_SECONDS))

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert holding.wait(_HOLD_SECONDS)
        by_key = await client.get("/v1/auth/whoami", headers={"X-API-Key": raw})
        by_cookie = await client.get("/v1/auth/whoami")
    finally:
        done.set()
        thread.join()
    assert released_by_us == [True]  # both requests finished while the writer still held on
    assert (by_key.status_code, by_key.json()["via_api_key"]) == (200, True)
    assert (by_cookie.status_code, by_cookie.json()["via_api_key"]) == (200, False)
