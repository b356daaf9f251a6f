"""The HTTP shell: health, readiness, metrics, problem+json for unknown routes and big bodies."""

from __future__ import annotations

import asyncio
import logging
import os
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from uvicorn.protocols.utils import get_path_with_query_string

from epix.api.app import create_app
from epix.db import Database
from epix.settings import Settings


@pytest.fixture
def client(sqlite_database: Database, tmp_path: Path) -> TestClient:
    settings = Settings(data_dir=tmp_path, max_body_bytes=1024)
    app = create_app(settings, sqlite_database)

    return TestClient(app, raise_server_exceptions=False)


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "process": str(os.getpid())}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"] == "ok"


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_api_reference_needs_nothing_from_the_internet(client: TestClient, page: str) -> None:
    """Its scripts and styles come from the node: it opens offline, and no CDN's script runs
    on the node's origin (where web sessions live)."""
    html = client.get(page)
    assert html.status_code == 200
    assert not re.findall(r"(?:src|href)=['\"]?(?:https?:)?//", html.text), html.text
    assets = re.findall(r"(?:src|href)=['\"]?(/[^'\" >]+)", html.text)
    assert any(asset.endswith(".js") for asset in assets), assets
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
    assert client.get("/openapi.json").json()["info"]["title"] == "EPIX"


def test_unknown_route_is_problem_json(client: TestClient) -> None:
    response = client.get("/v1/no-such-thing")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["code"] == "EPIX-REQ-005"


def test_oversized_body_refused_with_413(client: TestClient) -> None:
    response = client.post("/healthz", content=b"x" * 5000)
    assert response.status_code == 413
    assert response.json()["code"] == "EPIX-REQ-003"


def test_metrics_count_requests_by_route(client: TestClient) -> None:
    client.get("/healthz")
    text = client.get("/metrics").text
    assert 'epix_http_requests_total{method="GET",route="/healthz",status="200"}' in text


def test_the_access_log_never_holds_a_permits_security_token(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """uvicorn writes each request line with its query string; the lookup's ?token= is the
    issuer's per-permit secret and must not end up in the node's logs."""
    access = logging.getLogger("uvicorn.access")
    scope = {
        "path": "/v1/permits/XA/XA-1",
        "query_string": b"t%6Fken=TOP-SECRET&lang=en&token=AGAIN-SECRET",
    }
    access.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="uvicorn.access"):
            access.info(  # the very call uvicorn's HTTP protocols make
                '%s - "%s %s HTTP/%s" %d',
                "127.0.0.1:5000",
                "GET",
                get_path_with_query_string(scope),  # type: ignore[arg-type]
                "1.1",
                200,
            )
    finally:
        access.removeHandler(caplog.handler)
    line = caplog.records[-1].getMessage()
    assert "SECRET" not in line
    assert "/v1/permits/XA/XA-1?" in line and "lang=en" in line and "[redacted]" in line


def test_a_client_that_leaves_mid_body_is_no_error(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A disconnect (or the server's read timeout) during the body is the client's doing:
    nothing runs, nothing is logged as an error, no exception leaves the application."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/messages",
        "raw_path": b"/v1/messages",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/xml"), (b"content-length", b"100")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    messages = [{"type": "http.request", "body": b"<a", "more_body": True}]

    async def receive() -> dict[str, object]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        return None

    with caplog.at_level(logging.INFO):
        asyncio.run(client.app(scope, receive, send))  # type: ignore[call-arg,arg-type]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert "client left during its request body" in caplog.text
