"""The refusals in ``/openapi.json``: each operation lists the problem+json answers it can give,
by HTTP status, with one example per error code, so a client author sees the codes to handle,
and how to authenticate when it needs a caller.

A route names the codes of its own domain with ``openapi_extra=refusals(...)``; the ones every
request can meet (a field out of range, a NUL character, an internal error) and those of its
dependencies (authentication, role) are added here from the route itself, so they cannot be
forgotten.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from epix.api.problems import PROBLEM_JSON
from epix.api.security import get_current_principal, presented_key_principal, require_roles
from epix.errors import ERROR_TABLE, Severity

REFUSALS_KEY = "x-epix-refusals"
AUTHENTICATION_CODES = (
    "EPIX-AUTH-001",
    "EPIX-AUTH-002",
    "EPIX-AUTH-003",
    "EPIX-AUTH-006",
    "EPIX-AUTH-011",  # refused credentials from one address past EPIX_REFUSED_CREDENTIAL_MAX
)
# A web session's cookie: expired (EPIX-AUTH-009), or sent along by another site (EPIX-AUTH-012).
SESSION_CODES = ("EPIX-AUTH-009", "EPIX-AUTH-012")
ROLE_CODES = ("EPIX-AUTH-004",)

_PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details; `code` is the deciding entry of `errors`, from "
    "the error table (docs/errors.md).",
    "type": "object",
    "required": ["type", "title", "status", "detail", "code", "errors"],
    "properties": {
        "type": {"type": "string", "example": "urn:epix:error:EPIX-STATE-007"},
        "title": {"type": "string", "description": "The code's meaning from the error table."},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "What was wrong with this request."},
        "code": {"type": "string", "pattern": "^EPIX-[A-Z]+-[0-9]{3}$"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["code", "severity", "message", "location"],
                "properties": {
                    "code": {"type": "string"},
                    "severity": {"type": "string", "enum": ["error", "warning"]},
                    "message": {"type": "string"},
                    "location": {
                        "type": "string",
                        "description": "The field, header or document path it concerns.",
                    },
                    "line": {"type": ["integer", "null"], "description": "Permit line."},
                },
            },
        },
    },
}


_SECURITY_SCHEMES: dict[str, Any] = {
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (epix users issue-key, or the demo keys make run prints), "
        "sent as Authorization: Bearer <key>. The node's web pages use the session cookie of "
        "POST /v1/auth/login instead.",
    },
}


def refusals(*codes: str) -> dict[str, Any]:
    """``openapi_extra`` for a route: the error codes it can refuse with beyond those every
    request meets and those its authentication and role dependencies add."""
    unknown = [
        code
        for code in codes
        if code not in ERROR_TABLE or ERROR_TABLE[code].severity is not Severity.ERROR
    ]
    if unknown:
        raise ValueError(f"not error codes of the error table: {unknown}")
    return {REFUSALS_KEY: list(codes)}


def error_codes(*prefixes: str) -> tuple[str, ...]:
    """Every error (not warning) code starting with one of ``prefixes``, e.g. ``EPIX-SIG-``."""
    return tuple(
        entry.code
        for entry in ERROR_TABLE.values()
        if entry.severity is Severity.ERROR and entry.code.startswith(prefixes)
    )


def install_openapi(app: FastAPI, routers: Sequence[APIRouter]) -> None:
    """Make ``app.openapi()`` (``/openapi.json``, ``/docs``) list every operation's refusals."""
    generate = app.openapi
    routes = [route for router in routers for route in router.routes if isinstance(route, APIRoute)]

    def openapi() -> dict[str, Any]:
        schema = generate()  # cached by FastAPI: documented once
        if "Problem" not in schema.get("components", {}).get("schemas", {}):
            document_refusals(schema, routes)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def document_refusals(schema: dict[str, Any], routes: Sequence[APIRoute]) -> None:
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = _PROBLEM_SCHEMA
    components["securitySchemes"] = _SECURITY_SCHEMES
    for route in routes:
        if not route.include_in_schema:
            continue
        for method in route.methods or ():
            operation = schema["paths"][route.path_format][method.lower()]
            codes = [*_codes_every_request_meets(route), *operation.pop(REFUSALS_KEY, [])]
            _replace_error_responses(operation, codes)
            if "EPIX-AUTH-001" in codes:  # "Authorize" in /docs, and how to for client authors
                schemes: list[dict[str, list[str]]] = [{name: []} for name in _SECURITY_SCHEMES]
                # An empty requirement: the operation also answers callers without a key.
                operation["security"] = [{}, *schemes] if _key_optional(route) else schemes
    # FastAPI's own 422 body (HTTPValidationError) is never sent: validation is problem+json.
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)


def _codes_every_request_meets(route: APIRoute) -> list[str]:
    dependant = route.dependant
    codes = ["EPIX-REQ-007"]
    if dependant.path_params:
        codes += ["EPIX-REQ-005"]  # a value that takes the path to no route, e.g. with a "/"
    if dependant.path_params or dependant.query_params or dependant.body_params:
        codes += ["EPIX-REQ-004", "EPIX-REQ-009"]
    if dependant.body_params:
        # REQ-002 and REQ-015: a Content-Encoding, or a Transfer-Encoding but chunked
        codes += ["EPIX-REQ-001", "EPIX-REQ-002", "EPIX-REQ-003", "EPIX-REQ-015"]
    calls = set(_dependency_calls(dependant))
    if get_current_principal in calls:
        codes += [*AUTHENTICATION_CODES, *SESSION_CODES]
    elif presented_key_principal in calls:
        codes += AUTHENTICATION_CODES  # a key presented and refused; no cookie is read
    if any(_made_by(call, require_roles) for call in calls):
        codes += ROLE_CODES
    return codes


def _key_optional(route: APIRoute) -> bool:
    """Whether the operation is public but identifies a caller who presents an API key."""
    calls = set(_dependency_calls(route.dependant))
    return presented_key_principal in calls and get_current_principal not in calls


def _dependency_calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _dependency_calls(dependency)


def _made_by(call: Callable[..., Any], factory: Callable[..., Any]) -> bool:
    return getattr(call, "__qualname__", "").startswith(f"{factory.__name__}.<locals>.")


def _replace_error_responses(operation: dict[str, Any], codes: Sequence[str]) -> None:
    responses = operation.setdefault("responses", {})
    for status in [key for key in responses if not str(key).startswith(("1", "2", "3"))]:
        del responses[status]  # FastAPI's 422 HTTPValidationError, or a hand-made "4XX"
    by_status: dict[int, list[str]] = {}
    for code in dict.fromkeys(codes):  # declared order, once each
        by_status.setdefault(ERROR_TABLE[code].http_status, []).append(code)
    for status in sorted(by_status):
        responses[str(status)] = {
            "description": "\n".join(
                f"- `{code}`: {ERROR_TABLE[code].meaning}" for code in by_status[status]
            ),
            "content": {
                PROBLEM_JSON: {
                    "schema": {"$ref": "#/components/schemas/Problem"},
                    "examples": {code: _example(code) for code in by_status[status]},
                }
            },
        }


def _example(code: str) -> dict[str, Any]:
    entry = ERROR_TABLE[code]
    return {
        "summary": entry.meaning,
        "value": {
            "type": f"urn:epix:error:{code}",
            "title": entry.meaning,
            "status": entry.http_status,
            "detail": entry.meaning,
            "code": code,
            "errors": [
                {
                    "code": code,
                    "severity": "error",
                    "message": entry.meaning,
                    "location": "request",
                    "line": None,
                }
            ],
        },
    }
