"""``POST /v1/messages`` authenticates inside its pipeline hop: the same refusals, in the same
order (body limit, authentication, role, content type), as a route with auth dependencies."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from epix.api.app import create_app
from epix.db import Database
from epix.exchange.demo import DemoSetup, bootstrap_demo
from epix.exchange.models import Message
from epix.registry.roles import MANAGEMENT_AUTHORITY
from epix.settings import Settings


@pytest.fixture
def demo(sqlite_database: Database, tmp_path: Path) -> tuple[TestClient, DemoSetup]:
    settings = Settings(
        data_dir=tmp_path / "data", node_base_url="http://testserver", max_body_bytes=4096
    )
    setup = bootstrap_demo(sqlite_database, settings)
    client = TestClient(create_app(settings, sqlite_database), raise_server_exceptions=False)
    return client, setup


def _submit(client: TestClient, body: bytes, **headers: str) -> tuple[int, str]:
    sent = {
        "Content-Type": "application/xml",
        "X-EPIX-Message-Id": f"msg-{uuid.uuid4().hex}",
        "X-EPIX-From": "XA",
        "X-EPIX-To": "XB",
        **headers,
    }
    response = client.post("/v1/messages", content=body, headers=sent)
    assert response.headers["content-type"] == "application/problem+json"
    return response.status_code, response.json()["code"]


def _stored(database: Database) -> int:
    with database.read() as session:
        return session.scalar(select(func.count()).select_from(Message)) or 0


def test_refusals_and_their_order(
    demo: tuple[TestClient, DemoSetup], sqlite_database: Database
) -> None:
    client, setup = demo
    authority = f"Bearer {setup.api_key('XA', MANAGEMENT_AUTHORITY)}"
    admin = next(user for user in setup.users if user.role == "node_admin")
    cases = [
        # No credentials: 401 before the content type is looked at.
        ({"Content-Type": "application/json"}, b"{}", 401, "EPIX-AUTH-001"),
        ({"Authorization": "Basic eDp5"}, b"<a/>", 401, "EPIX-AUTH-001"),
        ({"Authorization": "Bearer epix_0000_not-a-key"}, b"<a/>", 401, "EPIX-AUTH-002"),
        # A node administrator may not submit at all.
        ({"Authorization": f"Bearer {admin.api_key}"}, b"<a/>", 403, "EPIX-AUTH-004"),
        # The body limit comes first, even without credentials.
        ({}, b"x" * 5000, 413, "EPIX-REQ-003"),
        ({"Authorization": authority, "Content-Type": "text/plain"}, b"<a/>", 415, "EPIX-REQ-002"),
    ]
    for headers, body, status, code in cases:
        assert _submit(client, body, **headers) == (status, code)
    assert _stored(sqlite_database) == 0


def test_cookie_sessions_submit_only_from_our_own_pages(
    demo: tuple[TestClient, DemoSetup],
) -> None:
    client, setup = demo
    person = next(u for u in setup.users if u.party == "XA" and u.role == MANAGEMENT_AUTHORITY)
    login = {"username": person.username, "password": person.password}
    assert client.post("/v1/auth/login", json=login).status_code == 200
    foreign = _submit(client, b"<a/>", Origin="https://elsewhere.example")
    assert foreign == (403, "EPIX-AUTH-012")
    # Authenticated by the cookie: the pipeline runs and refuses the document itself.
    assert _submit(client, b"<not-xml", Origin="http://testserver") == (400, "EPIX-XML-001")
