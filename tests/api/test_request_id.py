"""A request's id is in its answer, in `epix serve`'s log line for it and in its audit event."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import httpx
import pytest

from tests.db.node_process import FAILED_LOGIN, running_node

pytestmark = pytest.mark.slow


def _audited_request_ids(data_dir: Path) -> list[str]:
    with sqlite3.connect(data_dir / "epix.sqlite3") as connection:
        rows = connection.execute(
            "SELECT headers FROM audit_events WHERE action = 'login' ORDER BY sequence"
        ).fetchall()
    return [json.loads(headers).get("x-request-id", "") for (headers,) in rows]


def test_a_request_id_ties_the_answer_the_log_line_and_the_audit_event(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    given = "proxy-7f3a.9c:1"
    hostile = "x" * 129  # too long: replaced, as are spaces, % and control characters
    with running_node(data_dir) as node, httpx.Client(base_url=node.url, timeout=30) as client:
        answers = [
            client.post("/v1/auth/login", json=FAILED_LOGIN),
            client.post("/v1/auth/login", json=FAILED_LOGIN, headers={"X-Request-Id": given}),
            client.post("/v1/auth/login", json=FAILED_LOGIN, headers={"X-Request-Id": hostile}),
            client.post("/v1/auth/login", json=FAILED_LOGIN, headers={"X-Request-Id": "a %s b"}),
        ]
    ids = [answer.headers.get("x-request-id", "") for answer in answers]
    assert [answer.status_code for answer in answers] == [401] * 4
    assert ids[1] == given
    for generated in (ids[0], ids[2], ids[3]):
        assert re.fullmatch(r"[0-9a-f]{32}", generated), ids
    assert len(set(ids)) == 4
    assert _audited_request_ids(data_dir) == ids
    access_lines = [line for line in node.output.splitlines() if "/v1/auth/login" in line]
    assert [line.rsplit(" request_id=", 1)[-1] for line in access_lines] == ids
