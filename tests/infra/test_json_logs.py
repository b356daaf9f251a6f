"""EPIX_LOG_FORMAT=json: every line `epix serve` writes is one JSON object a log collector can
read, with the request's id, and never a credential the request carried."""

from __future__ import annotations

import io
import json
import logging
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from epix.api.request_id import RequestIdFilter, current_request_id
from epix.cli.logs import JsonFormatter
from tests.db.node_process import running_node

KEYS = {"time", "level", "logger", "message"}
PASSWORD = "correct-horse-battery-staple"
API_KEY = "epix_k_not-a-real-key-but-a-credential"
PERMIT_TOKEN = "permit-token-4f1c"


def _leave_mid_body(url: str) -> None:
    """A client that announces 100 bytes, sends 10 and hangs up: the node logs it (epix.api)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "", parts.port or 80), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/messages HTTP/1.1\r\nHost: node\r\nContent-Type: application/xml\r\n"
            b"Content-Length: 100\r\nX-Request-Id: left-mid-body\r\n\r\n<a>012345"
        )


@pytest.mark.slow
def test_every_line_of_a_json_logging_node_is_one_json_object(tmp_path: Path) -> None:
    extra_env = {"EPIX_LOG_FORMAT": "json", "EPIX_LOG_LEVEL": "info"}
    with (
        running_node(tmp_path / "data", extra_env=extra_env) as node,
        httpx.Client(base_url=node.url, timeout=30) as client,
    ):
        login = client.post(
            "/v1/auth/login",
            json={"username": "nobody", "password": PASSWORD},
            headers={"X-Request-Id": "login-1"},
        )
        inbox = client.get("/v1/inbox", headers={"Authorization": f"Bearer {API_KEY}"})
        client.get(f"/v1/permits/XA/XA-1?token={PERMIT_TOKEN}")
        _leave_mid_body(node.url)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.1)
            if "client left" in node.printed():
                break
    assert (login.status_code, inbox.status_code) == (401, 401)
    lines = [json.loads(line) for line in node.output.splitlines()]  # each one JSON object
    assert lines and all(line.keys() >= KEYS for line in lines), node.output
    assert {line["logger"] for line in lines} >= {"uvicorn.error", "uvicorn.access", "epix.api"}
    by_id = {line["request_id"]: line for line in lines if "request_id" in line}
    assert 'POST /v1/auth/login HTTP/1.1" 401' in by_id["login-1"]["message"]
    assert by_id[inbox.headers["x-request-id"]]["logger"] == "uvicorn.access"
    left = by_id["left-mid-body"]
    assert (left["logger"], left["level"]) == ("epix.api", "INFO")
    assert left["message"] == "client left during its request body: POST /v1/messages"
    for secret in (PASSWORD, API_KEY, PERMIT_TOKEN):
        assert secret not in node.output
    assert "token=[redacted]" in node.output


def test_a_json_line_carries_the_exception_and_the_request_id_on_one_line() -> None:
    """A traceback spans many lines in text; in JSON it is one value of one line."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    log = logging.getLogger("epix.test_json_logs")
    log.addHandler(handler)
    log.propagate = False
    token = current_request_id.set("req-7")
    try:
        try:
            {}["missing"]
        except KeyError:
            log.exception('failed on "%s"\nsecond line', "x")
        current_request_id.reset(token)
        log.warning("outside any request")
    finally:
        log.removeHandler(handler)
        log.propagate = True
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["request_id"] == "req-7"
    assert first["message"] == 'failed on "x"\nsecond line'
    assert first["level"] == "ERROR" and first["logger"] == "epix.test_json_logs"
    assert first["exception"].startswith("Traceback (most recent call last):")
    assert first["exception"].endswith("KeyError: 'missing'")
    assert second.keys() == KEYS and second["time"].endswith("Z")
