"""A web session ends a set time after its login, even one in constant use."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from epix.api.app import create_app
from epix.db import Database
from epix.settings import Settings
from tests.web.conftest import OFFICER, OFFICER_PASSWORD, create_officer


def test_a_busy_session_still_ends_its_lifetime_after_the_login(
    sqlite_database: Database, tmp_path: Path
) -> None:
    create_officer(sqlite_database)
    settings = Settings(data_dir=tmp_path, web_session_max_seconds=3)
    client = TestClient(create_app(settings, sqlite_database))
    login = {"username": OFFICER, "password": OFFICER_PASSWORD}
    assert client.post("/v1/auth/login", json=login).status_code == 200
    logged_in = time.monotonic()
    # In use all along (each answer renews the cookie), for less than the lifetime less the up to
    # one second that the whole-second login time may lose.
    while time.monotonic() - logged_in < 1.8:
        assert client.get("/v1/auth/whoami").status_code == 200
        time.sleep(0.25)
    time.sleep(max(0.0, 3.1 - (time.monotonic() - logged_in)))
    ended = client.get("/v1/auth/whoami")
    assert (ended.status_code, ended.json()["code"]) == (401, "EPIX-AUTH-009")
    assert client.get("/v1/auth/whoami").json()["code"] == "EPIX-AUTH-001"  # cookie cleared
    assert client.post("/v1/auth/login", json=login).status_code == 200  # a new login: 3 s more
    assert client.get("/v1/auth/whoami").status_code == 200
