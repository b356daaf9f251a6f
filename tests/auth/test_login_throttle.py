"""Failed web logins are counted per user name and client address: past the limit, attempts
are refused with 429 EPIX-AUTH-010 and Retry-After, even with the right password, while the
same user logs in from elsewhere."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from epix.api.app import create_app
from epix.auth.throttle import LoginThrottle
from epix.db import Database
from epix.settings import Settings

from .conftest import PASSWORD, MakeUser

pytestmark = pytest.mark.anyio
WINDOW = 600


@pytest.fixture
def throttled_app(tmp_path: Path, sqlite_database: Database) -> FastAPI:
    settings = Settings(
        data_dir=tmp_path / "data",
        node_base_url="http://testserver",
        login_max_failures=3,
        login_failure_window_seconds=WINDOW,
    )
    return create_app(settings, sqlite_database)


def _client_from(app: FastAPI, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def attacker(throttled_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with _client_from(throttled_app, "192.0.2.66") as client:
        yield client


async def _login(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post("/v1/auth/login", json={"username": username, "password": password})


async def test_past_the_limit_even_the_right_password_waits_but_not_from_elsewhere(
    throttled_app: FastAPI,
    attacker: httpx.AsyncClient,
    sqlite_database: Database,
    make_user: MakeUser,
) -> None:
    make_user("officer")
    for guess in ("guess one", "guess two", "guess three"):
        assert (await _login(attacker, "officer", guess)).json()["code"] == "EPIX-AUTH-002"

    for username in ("officer", "OFFICER"):  # case variants count as the same name
        refused = await _login(attacker, username, PASSWORD)
        assert refused.status_code == 429
        assert refused.json()["code"] == "EPIX-AUTH-010"
        assert 0 < int(refused.headers["retry-after"]) <= WINDOW
        assert "epix_session" not in refused.cookies

    async with _client_from(throttled_app, "198.51.100.7") as officer:
        assert (await _login(officer, "officer", PASSWORD)).status_code == 200

    with sqlite_database.engine.connect() as connection:
        outcomes = connection.execute(
            text("SELECT outcome FROM audit_events WHERE action = 'login' ORDER BY sequence")
        ).scalars()
        assert list(outcomes) == ["EPIX-AUTH-002"] * 3 + ["EPIX-AUTH-010"] * 2 + ["ok"]


async def test_a_successful_login_clears_the_count(
    attacker: httpx.AsyncClient, make_user: MakeUser
) -> None:
    make_user("officer")
    for _ in range(2):
        assert (await _login(attacker, "officer", "typo")).status_code == 401
    assert (await _login(attacker, "officer", PASSWORD)).status_code == 200
    for _ in range(2):
        assert (await _login(attacker, "officer", "typo")).status_code == 401
    assert (await _login(attacker, "officer", PASSWORD)).status_code == 200


def test_a_pair_may_try_again_once_its_oldest_failure_leaves_the_window() -> None:
    now = [1000.0]
    throttle = LoginThrottle(2, 60, clock=lambda: now[0])
    throttle.failed("officer", "192.0.2.1")
    now[0] += 20
    throttle.failed("officer", "192.0.2.1")
    assert throttle.retry_after("officer", "192.0.2.1") == 40
    assert throttle.retry_after("officer", "192.0.2.2") is None
    assert throttle.retry_after("clerk", "192.0.2.1") is None
    now[0] += 39.5
    assert throttle.retry_after("officer", "192.0.2.1") == 1
    now[0] += 0.5
    assert throttle.retry_after("officer", "192.0.2.1") is None
    throttle.failed("officer", "192.0.2.1")  # one failure left in the window, plus this one
    assert throttle.retry_after("officer", "192.0.2.1") == 20


def test_the_pairs_remembered_are_bounded_least_recently_failed_first() -> None:
    throttle = LoginThrottle(1, 60, clock=lambda: 0.0, max_pairs=3)
    for name in ("a", "b", "c", "d"):
        throttle.failed(name, "192.0.2.1")
    assert throttle.retry_after("a", "192.0.2.1") is None
    assert [throttle.retry_after(name, "192.0.2.1") for name in ("b", "c", "d")] == [60] * 3
