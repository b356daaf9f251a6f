"""Every operation in ``/openapi.json``, enumerated so that a new route is swept too: the public
ones are a fixed list, every other one refuses a missing, revoked or disabled user's key with
its documented code, and a user of another Party with any one role gets no 2xx beyond the
operations that role is meant to use, and only codes the operation documents."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from epix.auth import service
from epix.auth.models import ApiKey
from epix.auth.principal import SECRETARIAT_PARTY, Role
from epix.db import Database
from epix.db.base import utcnow

from .conftest import MakeUser

pytestmark = pytest.mark.anyio
METHODS = ("get", "head", "post", "put", "patch", "delete")
PUBLIC = {
    "GET /healthz",
    "GET /readyz",
    "POST /v1/auth/login",
    "POST /v1/auth/logout",
    "GET /v1/registry",
    "GET /v1/registry/parties",
    "GET /v1/registry/parties/{code}",
    "GET /v1/registry/certificates/expiring",
    "GET /v1/registry/certificates/{fingerprint}",
}
# What a user of Party XC (or of the Secretariat) with only this role may be answered 2xx:
# reads of its own Party's inbox, outbox and subscriptions, and the Secretariat's user list
# and registry followers.
_OWN = {"GET /v1/auth/whoami", "GET /v1/inbox", "GET /v1/outbox"}
ALLOWED_2XX: dict[Role, set[str]] = {
    Role.MANAGEMENT_AUTHORITY: _OWN | {"GET /v1/webhooks"},
    Role.CUSTOMS: _OWN | {"GET /v1/webhooks"},
    Role.PEER_NODE: _OWN,
    Role.SECRETARIAT: _OWN | {"GET /v1/webhooks", "GET /v1/users", "GET /v1/registry/followers"},
}
PATH_VALUES = {"party": "XA", "code": "XA", "number": "XA-0001", "username": "xa-officer"}


def _operations(app: FastAPI) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in app.openapi()["paths"].items():
        for method in METHODS:
            if method in item:
                yield method.upper(), path, item[method]


def _documented_codes(operation: dict[str, Any]) -> set[str]:
    return {
        code
        for response in operation.get("responses", {}).values()
        for content in response.get("content", {}).values()
        for code in content.get("examples", {})
    }


def _url(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES.get(m.group(1), "1"), path)


async def _call(
    client: httpx.AsyncClient, method: str, path: str, key: str | None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {} if method in ("POST", "PUT", "PATCH") else None
    return await client.request(method, _url(path), headers=headers, json=body)


def _key_of(database: Database, username: str) -> str:
    with database.unit_of_work() as session:
        return service.issue_api_key(session, service.get_user(session, username))[1]


def _code(response: httpx.Response) -> str | None:
    if response.headers.get("content-type") != "application/problem+json":
        return None
    code: str = response.json()["code"]
    return code


def _public(operation: dict[str, Any]) -> bool:
    """No security requirement, or an empty one beside it (a key is optional)."""
    return {} in operation.get("security", [{}])


async def test_only_the_listed_operations_are_public(app: FastAPI) -> None:
    public = {f"{m} {p}" for m, p, op in _operations(app) if _public(op)}
    assert public == PUBLIC


async def test_every_other_operation_refuses_a_missing_revoked_or_disabled_key(
    app: FastAPI, sqlite_database: Database, make_user: MakeUser
) -> None:
    make_user("revoked-one", party="XA")
    make_user("disabled-one", party="XA")
    revoked, disabled = (
        _key_of(sqlite_database, "revoked-one"),
        _key_of(sqlite_database, "disabled-one"),
    )
    with sqlite_database.unit_of_work() as session:
        session.execute(update(ApiKey).values(revoked_at=utcnow()).where(ApiKey.id == 1))
        service.disable_user(session, service.get_user(session, "disabled-one"))
    secured = [(m, p, op) for m, p, op in _operations(app) if not _public(op)]
    assert len(secured) > 30
    for n, (method, path, operation) in enumerate(secured):
        # One client address per operation: refused keys from one address are throttled.
        transport = httpx.ASGITransport(app=app, client=(f"192.0.2.{n + 1}", 40000))
        client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        for key, status, code in (
            (None, 401, "EPIX-AUTH-001"),
            (revoked, 401, "EPIX-AUTH-003"),
            (disabled, 403, "EPIX-AUTH-006"),
        ):
            answer = await _call(client, method, path, key)
            where = f"{method} {path} with {code}"
            assert (answer.status_code, _code(answer) if method != "HEAD" else code) == (
                status,
                code,
            ), where
            assert code in _documented_codes(operation), where


@pytest.mark.parametrize("role", list(ALLOWED_2XX))
async def test_a_user_of_another_party_with_one_role_gets_nothing_beyond_it(
    app: FastAPI,
    client: httpx.AsyncClient,
    sqlite_database: Database,
    make_user: MakeUser,
    role: Role,
) -> None:
    make_user("xa-officer", party="XA", roles=(Role.MANAGEMENT_AUTHORITY,))
    party = SECRETARIAT_PARTY if role is Role.SECRETARIAT else "XC"
    make_user("outsider", party=party, roles=(role,))
    _key_of(sqlite_database, "xa-officer")  # key 1, which the sweep's "1" ids then name
    key = _key_of(sqlite_database, "outsider")
    granted = set()
    for method, path, operation in _operations(app):
        if _public(operation):
            continue
        answer = await _call(client, method, path, key)
        where = f"{method} {path} as {role.value} of {party}: {answer.text[:300]}"
        assert answer.status_code < 500, where
        if answer.status_code < 300:
            granted.add(f"{method} {path}")
        elif method != "HEAD":
            assert _code(answer) in _documented_codes(operation), where
        assert "xa-officer" not in answer.text or path == "/v1/users", where
    assert granted == ALLOWED_2XX[role]
