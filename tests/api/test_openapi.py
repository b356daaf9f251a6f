"""/openapi.json documents every operation: a summary, a description and each refusal it can
give as problem+json, by status, with an example per error code (the fuzzer in
tests/robustness/test_api_fuzz.py checks that the refusals it meets are among them)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any, get_args

import pytest
from fastapi.routing import APIRoute
from pydantic import BaseModel

from epix.api.app import create_app
from epix.api.openapi import AUTHENTICATION_CODES
from epix.api.routers import (
    audit,
    auth,
    endorsements,
    health,
    inbox,
    messages,
    outbox,
    permits,
    registry,
    reports,
    webhooks,
)
from epix.errors import ERROR_TABLE
from epix.settings import Settings

SCHEMA = create_app(Settings(data_dir=Path("/nonexistent"))).openapi()
ROUTES = [
    route
    for module in (
        health,
        auth,
        messages,
        inbox,
        endorsements,
        permits,
        webhooks,
        outbox,
        registry,
        audit,
        reports,
    )
    for route in module.router.routes
    if isinstance(route, APIRoute) and route.include_in_schema
]
OPERATIONS = [
    (route, method, SCHEMA["paths"][route.path_format][method.lower()])
    for route in ROUTES
    for method in sorted(route.methods or ())
]


def test_every_operation_of_the_schema_is_checked_here() -> None:
    methods = {"get", "head", "put", "post", "delete", "patch"}
    in_schema = sum(1 for item in SCHEMA["paths"].values() for method in item if method in methods)
    assert len(OPERATIONS) == in_schema


@pytest.mark.parametrize(
    ("route", "method", "operation"), OPERATIONS, ids=lambda v: getattr(v, "path", None)
)
def test_operation_has_a_summary_a_description_and_its_refusals(
    route: APIRoute, method: str, operation: dict[str, Any]
) -> None:
    # Given in the route, not made up by FastAPI from the function's name ("Get Permit").
    assert route.summary and route.summary == operation["summary"]
    assert operation.get("description", "").strip()
    documented: dict[str, int] = {}
    for status, response in operation["responses"].items():
        if status.startswith(("1", "2", "3")):
            continue
        content = response["content"]
        assert list(content) == ["application/problem+json"], (status, content)
        assert content["application/problem+json"]["schema"] == {
            "$ref": "#/components/schemas/Problem"
        }
        examples = content["application/problem+json"]["examples"]
        assert examples, status
        for code, example in examples.items():
            assert ERROR_TABLE[code].http_status == int(status), (code, status)
            assert example["value"]["code"] == code and example["value"]["status"] == int(status)
            assert code in response["description"]
            documented[code] = int(status)
    assert "EPIX-REQ-007" in documented
    if "get_current_principal" in _dependency_names(route):
        assert set(AUTHENTICATION_CODES) <= set(documented)
    # Operations that need a caller say how to authenticate ("Authorize" in /docs); others not.
    authenticated = set(AUTHENTICATION_CODES) <= set(documented)
    assert bool(operation.get("security")) == authenticated
    # A code the endpoint itself raises is a refusal the client must hear of.
    raised = set(re.findall(r'"(EPIX-[A-Z]+-\d{3})"', inspect.getsource(route.endpoint)))
    assert raised <= set(documented), raised - set(documented)


def test_no_validation_error_schema_of_fastapi_is_left() -> None:
    """FastAPI's 422 HTTPValidationError is never what the node sends."""
    assert "HTTPValidationError" not in str(SCHEMA)
    assert "Problem" in SCHEMA["components"]["schemas"]


def _dependency_names(route: APIRoute) -> set[str]:
    names: set[str] = set()
    pending = list(route.dependant.dependencies)
    while pending:
        dependency = pending.pop()
        names.add(getattr(dependency.call, "__name__", ""))
        pending += dependency.dependencies
    return names


JSON_BODIES = [
    (route, operation)
    for route, _method, operation in OPERATIONS
    if "application/json" in operation.get("requestBody", {}).get("content", {})
]


@pytest.mark.parametrize(
    ("route", "operation"), JSON_BODIES, ids=lambda v: getattr(v, "path", None)
)
def test_json_bodies_come_with_an_example_the_route_accepts(
    route: APIRoute, operation: dict[str, Any]
) -> None:
    """Someone writing a client (or pressing "Try it out" in /docs) starts from a valid body."""
    body = route.body_field
    assert body is not None
    # An optional body is `Model | None`.
    (model,) = [
        kind
        for kind in (*get_args(body.field_info.annotation), body.field_info.annotation)
        if isinstance(kind, type) and issubclass(kind, BaseModel)
    ]
    schema = model.model_json_schema()
    examples = schema.get("examples") or [
        {
            name: prop["examples"][0]
            for name, prop in schema["properties"].items()
            if "examples" in prop
        }
    ]
    assert examples != [{}], f"{model} has no example"
    for example in examples:
        model.model_validate(example)
