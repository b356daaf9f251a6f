"""A NUL character anywhere in a request is a coded refusal on both backends, never a 500.

PostgreSQL cannot store U+0000 in a text column (psycopg refuses the parameter), SQLite can. A
NUL in the path or query is refused before routing (EPIX-REQ-009): the audit trail records the
path of every request it audits, refused ones included. One in a JSON string is refused where
the database refuses it, as the same code. Runs on SQLite and, in CI, on PostgreSQL.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from epix.db import Database
from tests.exchange.conftest import Node, headers, make_node
from tests.robustness.conftest import assert_problem

NUL = "a\x00b"


@pytest.fixture
def node(tmp_path: Path, database: Database) -> Node:
    return make_node(tmp_path, database, run_worker_in_process=False)


def _operations(node: Node) -> list[tuple[str, str, dict[str, Any]]]:
    """Every operation but HEAD ones: each shares its GET's handler, and its answer has no
    body to read the code from (the fuzzer checks a HEAD answers as its GET)."""
    spec = node.app.openapi()
    return [
        (method.upper(), path, operation)
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if method != "head"
    ]


def _json_body(node: Node, operation: dict[str, Any]) -> dict[str, Any] | None:
    """Every string-valued property of the operation's JSON body set to a text with a NUL."""
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return None
    schema = content["application/json"]["schema"]
    if "$ref" in schema:
        schema = node.app.openapi()["components"]["schemas"][schema["$ref"].split("/")[-1]]
    return dict.fromkeys(schema.get("properties", {}), NUL)


def test_a_nul_in_the_path_of_any_operation_is_refused_before_routing(node: Node) -> None:
    caller = {"Authorization": f"Bearer {node.key('CITES', 'secretariat')}"}
    with TestClient(node.app) as client:
        checked = 0
        for method, path, _operation in _operations(node):
            if "{" not in path:
                continue
            response = client.request(method, re.sub(r"\{[^}]+\}", "a%00b", path), headers=caller)
            assert response.status_code == 400, (method, path, response.text)
            assert response.json()["code"] == "EPIX-REQ-009", (method, path)
            assert response.json()["errors"][0]["location"] == "path"
            checked += 1
    assert checked > 20


@pytest.mark.parametrize(
    "url", ["/v1/inbox?cursor=1%00", "/v1/permits/XA/XA-1?token=secret%00token"]
)
def test_a_nul_in_the_query_is_refused(node: Node, url: str) -> None:
    with TestClient(node.app) as client:
        response = client.get(url, headers=headers(node.key("XB", "customs")))
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "EPIX-REQ-009"
    assert response.json()["errors"][0]["location"] == "query"


def test_a_nul_in_a_json_string_is_never_a_server_error(node: Node) -> None:
    """Every operation, as every demo user, at a permit on file, with NUL in every string of
    its JSON body and query: a coded answer on both backends."""
    number = "XA-NUL-0001"
    with TestClient(node.app) as client:
        submitted = client.post(
            "/v1/messages",
            content=node.signed_permit(number),
            headers=headers(node.key("XA", "management_authority")),
        )
        assert submitted.status_code == 201, submitted.text
        values = {"party": "XA", "number": number, "code": "XA"}
        for method, path, operation in _operations(node):
            url = re.sub(r"\{([^}:]+)(:[^}]*)?\}", lambda m: values.get(m.group(1), "1"), path)
            query = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
            body = _json_body(node, operation)
            for user in node.demo.users:
                response = client.request(
                    method,
                    url,
                    json=body,
                    headers={"Authorization": f"Bearer {user.api_key}"},
                    # A NUL in the query is refused up front; the JSON strings are the point.
                    params=dict.fromkeys(query, "x"),
                )
                assert_problem(
                    response.status_code,
                    response.headers.get("content-type", ""),
                    response.content,
                )


def test_a_nul_in_a_stored_json_string_is_refused_on_postgresql_and_kept_on_sqlite(
    node: Node,
) -> None:
    """A user's full name is free text: PostgreSQL cannot store a NUL in it (EPIX-REQ-009, and
    nothing is created), SQLite stores it as given."""
    key = next(user.api_key for user in node.demo.users if user.username == "node-admin")
    admin = {"Authorization": f"Bearer {key}"}
    with TestClient(node.app) as client:
        response = client.post(
            "/v1/users",
            json={
                "username": "nul-full-name",
                "full_name": "Ann\x00Other",
                "party": "XA",
                "authority": "XA Management Authority (DEMO)",
                "roles": ["customs"],
            },
            headers=admin,
        )
        listed = client.get("/v1/users", headers=admin).json()
    names = [user["username"] for user in listed]
    if node.database.engine.dialect.name == "postgresql":
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "EPIX-REQ-009"
        assert "NUL character" in response.json()["detail"]
        assert "nul-full-name" not in names
    else:
        assert response.status_code == 201, response.text
        assert "nul-full-name" in names
