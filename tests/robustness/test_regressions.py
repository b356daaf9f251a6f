"""Regression tests for refusals the fuzzers found: each is a coded problem with a location."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from tests.robustness.conftest import Node, assert_problem


@pytest.fixture
def client(node: Node) -> TestClient:
    return TestClient(node.app, base_url="http://testserver")


def _error(response: object) -> dict[str, object]:
    assert_problem(response.status_code, response.headers["content-type"], response.content)  # type: ignore[attr-defined]
    errors: list[dict[str, object]] = response.json()["errors"]  # type: ignore[attr-defined]
    return errors[0]


def test_a_json_body_that_is_not_utf8_is_a_coded_400_at_the_body(client: TestClient) -> None:
    response = client.post(
        "/v1/auth/login",
        content=b'{"username": "\xff\xfe"}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    error = _error(response)
    assert (error["code"], error["location"]) == ("EPIX-REQ-001", "body")


def test_malformed_json_names_the_reason_and_the_offset(client: TestClient) -> None:
    response = client.post(
        "/v1/auth/login", content=b'{"username": ', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    error = _error(response)
    assert error["code"] == "EPIX-REQ-001"
    assert "not valid JSON" in str(error["message"])
    assert str(error["location"]).startswith("body/")


def test_unknown_route_and_wrong_method_point_at_the_path(client: TestClient) -> None:
    missing = client.get("/v1/no-such-thing")
    assert missing.status_code == 404
    assert _error(missing)["location"] == "/v1/no-such-thing"
    wrong = client.delete("/v1/inbox")
    assert wrong.status_code == 405
    assert _error(wrong)["location"] == "/v1/inbox"
