"""Every route the app serves, walked from ``app.routes`` (the web pages, ``/metrics``, the API
reference and static files too, which /openapi.json does not list), with the authorization it
declares here: a new route fails until it is given a row, and each row is checked against the
route itself.

- ``PUBLIC``: no credential needed; none is read, or a presented API key is checked (never
  served as anonymous).
- ``CALLER``: any authenticated caller (``CurrentPrincipal``); the route scopes to the
  caller's own Party, user or row itself (the third column says how).
- ``roles(...)``: only these roles; every other role, alone, is refused with EPIX-AUTH-004
  before anything is looked up.
- ``IN_HANDLER``: the handler authenticates itself (``POST /v1/messages`` on its hot path, the
  web forms that send a person to the login page); without a credential there is no 2xx.

tests/auth/test_route_sweep.py checks the OpenAPI operations' refusals in depth; this file
keeps the table complete and true.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import BaseRoute, Mount, Route

from epix.api.security import get_current_principal, presented_key_principal
from epix.auth import service
from epix.auth.principal import SECRETARIAT_PARTY, Role
from epix.db import Database

from .conftest import MakeUser

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Access:
    kind: str
    roles: frozenset[Role] = field(default_factory=frozenset)


PUBLIC = Access("public")
CALLER = Access("caller")
IN_HANDLER = Access("in handler")


def roles(*names: Role) -> Access:
    return Access("roles", frozenset(names))


MA, CUSTOMS, SECRETARIAT, NODE_ADMIN = (
    Role.MANAGEMENT_AUTHORITY,
    Role.CUSTOMS,
    Role.SECRETARIAT,
    Role.NODE_ADMIN,
)
PERMIT = "/v1/permits/{party}/{number:path}"
# route -> (who may call it, which Party / ownership check the route or its service applies)
TABLE: dict[str, tuple[Access, str]] = {
    "GET /openapi.json": (PUBLIC, "-"),
    "GET /docs": (PUBLIC, "-"),
    "GET /redoc": (PUBLIC, "-"),
    "MOUNT /reference-assets": (PUBLIC, "static files"),
    "GET /metrics": (PUBLIC, "Party series only for EPIX_METRICS_TOKEN or a node_admin key"),
    "GET /healthz": (PUBLIC, "-"),
    "GET /readyz": (PUBLIC, "-"),
    "POST /v1/auth/login": (PUBLIC, "password checked, throttled"),
    "POST /v1/auth/logout": (PUBLIC, "ends the caller's own session"),
    "GET /v1/auth/whoami": (CALLER, "the caller"),
    "GET /v1/users": (roles(NODE_ADMIN, SECRETARIAT), "Party node: own Party (AUTH-005)"),
    "POST /v1/users": (roles(NODE_ADMIN), "Party node: own Party (AUTH-005/013)"),
    "POST /v1/users/{username}/disable": (roles(NODE_ADMIN), "Party node: own (as AUTH-008)"),
    "POST /v1/users/{username}/enable": (roles(NODE_ADMIN), "Party node: own (as AUTH-008)"),
    "DELETE /v1/users/{username}": (roles(NODE_ADMIN), "Party node: own (as AUTH-008)"),
    "GET /v1/users/{username}/api-keys": (CALLER, "own keys; node_admin: administered users"),
    "POST /v1/users/{username}/api-keys": (roles(NODE_ADMIN), "Party node: own (as AUTH-008)"),
    "POST /v1/api-keys/{key_id}/revoke": (CALLER, "own key; node_admin: administered (AUTH-008)"),
    "POST /v1/messages": (IN_HANDLER, "MA/customs/peer_node by document type; From = own Party"),
    "GET /v1/messages/{message_id}": (CALLER, "sent by the caller's Party (else REQ-005)"),
    "GET /v1/inbox": (CALLER, "the caller's Party's inbox"),
    "HEAD /v1/inbox/{entry_id}": (CALLER, "the caller's Party's entry (else REQ-005)"),
    "GET /v1/inbox/{entry_id}": (CALLER, "the caller's Party's entry (else REQ-005)"),
    "POST /v1/inbox/{entry_id}/ack": (CALLER, "the caller's Party's entry (else REQ-005)"),
    f"GET {PERMIT}/ledger": (roles(CUSTOMS, MA), "issuer/exporter/importer (else STATE-007)"),
    f"POST {PERMIT}/reservations": (roles(CUSTOMS), "visible permit; side's Party (STATE-006)"),
    f"POST {PERMIT}/reservations/{{reservation_id}}/release": (
        roles(CUSTOMS),
        "visible permit; reservation of the caller's Party (QTY-005)",
    ),
    f"POST {PERMIT}/reservations/{{reservation_id}}/confirm": (
        roles(CUSTOMS),
        "visible permit; reservation of the caller's Party (QTY-005)",
    ),
    f"POST {PERMIT}/endorsements": (roles(CUSTOMS), "visible permit; side's Party (STATE-006)"),
    f"POST {PERMIT}/endorsements/signed": (
        roles(CUSTOMS),
        "signer registered for the caller's Party (AUTH-005); side's Party",
    ),
    f"GET {PERMIT}/endorsements": (roles(CUSTOMS, MA), "issuer/exporter/importer (else STATE-007)"),
    f"GET {PERMIT}/endorsements/{{endorsement_id}}/xml": (
        roles(CUSTOMS, MA),
        "issuer/exporter/importer (else STATE-007)",
    ),
    f"GET {PERMIT}/xml": (
        CALLER,
        "its Parties, Secretariat; other MA/customs with its token if set (STATE-007)",
    ),
    f"POST {PERMIT}/cancel": (roles(MA), "issuing Party (AUTH-005)"),
    f"POST {PERMIT}/replace": (roles(MA), "issuing Party (AUTH-005)"),
    f"GET {PERMIT}": (
        CALLER,
        "its Parties, Secretariat; other MA/customs with its token if set (STATE-007)",
    ),
    "POST /v1/webhooks": (roles(MA, CUSTOMS, SECRETARIAT, NODE_ADMIN), "the caller's Party"),
    "GET /v1/webhooks": (roles(MA, CUSTOMS, SECRETARIAT, NODE_ADMIN), "the caller's Party"),
    "POST /v1/webhooks/{subscription_id}/secret": (
        roles(MA, CUSTOMS, SECRETARIAT, NODE_ADMIN),
        "the caller's Party's subscription",
    ),
    "DELETE /v1/webhooks/{subscription_id}": (
        roles(MA, CUSTOMS, SECRETARIAT, NODE_ADMIN),
        "the caller's Party's subscription",
    ),
    "GET /v1/outbox": (CALLER, "rows the caller's Party sent; a hub's node_admin: all"),
    "GET /v1/outbox/{row_id}": (CALLER, "as the list (else DLV-009)"),
    "POST /v1/outbox/{row_id}/resend": (roles(NODE_ADMIN), "Party node: own rows (as DLV-009)"),
    "GET /v1/registry": (PUBLIC, "a presented key is checked"),
    "GET /v1/registry/followers": (roles(SECRETARIAT), "-"),
    "GET /v1/registry/parties": (PUBLIC, "public keys"),
    "GET /v1/registry/parties/{code}": (PUBLIC, "public keys"),
    "GET /v1/registry/certificates/expiring": (PUBLIC, "public keys"),
    "GET /v1/registry/certificates/{fingerprint}": (PUBLIC, "public keys"),
    "POST /v1/registry/parties": (roles(SECRETARIAT), "-"),
    "POST /v1/registry/parties/{code}/authorities": (roles(SECRETARIAT), "-"),
    "POST /v1/registry/authorities/{authority_id}/certificates": (roles(SECRETARIAT), "-"),
    "PUT /v1/registry/parties/{code}/endpoint": (roles(SECRETARIAT), "-"),
    "DELETE /v1/registry/parties/{code}/endpoint": (roles(SECRETARIAT), "-"),
    "POST /v1/registry/certificates/{fingerprint}/revocation": (roles(SECRETARIAT), "-"),
    "GET /v1/audit/verify": (roles(NODE_ADMIN), "-"),
    "POST /v1/audit/checkpoints": (roles(NODE_ADMIN), "-"),
    "GET /v1/reports/annual/{party}/{year}": (roles(SECRETARIAT, MA), "MA: own Party (AUTH-005)"),
    "GET /": (PUBLIC, "redirect"),
    "GET /web/": (PUBLIC, "redirect"),
    "GET /web/login": (PUBLIC, "-"),
    "POST /web/login": (PUBLIC, "password checked, throttled"),
    "POST /web/logout": (PUBLIC, "ends the caller's own session, as POST /v1/auth/logout"),
    "GET /web/lookup": (PUBLIC, "the page; its script calls the API"),
    "GET /web/check": (IN_HANDLER, "as GET /v1/permits/{party}/{number}"),
    "POST /web/check": (IN_HANDLER, "as GET /v1/permits/{party}/{number}"),
    "GET /web/endorse": (PUBLIC, "redirect"),
    "POST /web/endorse": (IN_HANDLER, "customs; as POST .../endorsements"),
    "GET /web/registry": (PUBLIC, "public keys"),
    "GET /web/qr.svg": (PUBLIC, "a QR of the check page's address"),
    "MOUNT /web/static": (PUBLIC, "static files"),
}
PATH_VALUES = {"party": "XA", "number:path": "XA-0001", "code": "XA", "year": "2026"}


def _flattened(app: FastAPI) -> Iterator[BaseRoute]:
    """``app.routes`` with included routers opened (FastAPI includes them lazily)."""
    for context in iter_route_contexts(app.routes):
        yield context.original_route


def served(app: FastAPI) -> dict[str, BaseRoute]:
    """'METHOD path' (or 'MOUNT path') of every route the app serves."""
    routes: dict[str, BaseRoute] = {}
    for route in _flattened(app):
        if isinstance(route, Mount):
            routes[f"MOUNT {route.path}"] = route
        elif isinstance(route, Route | APIRoute):
            for method in route.methods or ():
                if method != "HEAD" or route.methods == {"HEAD"}:  # GET's HEAD is GET's
                    routes[f"{method} {route.path}"] = route
        else:
            raise AssertionError(f"a route of a kind this table does not know: {route!r}")
    return routes


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _calls(dependency)


def _url(route: str) -> str:
    path = route.split(" ", 1)[1]
    for name, value in PATH_VALUES.items():
        path = path.replace(f"{{{name}}}", value)
    return re.sub(r"\{\w+\}", "1", path)


def test_every_route_the_app_serves_declares_its_authorization(app: FastAPI) -> None:
    routes = served(app)
    undeclared = sorted(set(routes) - set(TABLE))
    assert not undeclared, f"declare who may call these in TABLE: {undeclared}"
    assert not sorted(set(TABLE) - set(routes)), "rows of routes that are gone"


def test_each_route_applies_what_its_row_declares(app: FastAPI) -> None:
    wrong = []
    for name, route in served(app).items():
        access = TABLE[name][0]
        calls = list(_calls(route.dependant)) if isinstance(route, APIRoute) else []
        # A role check depends on get_current_principal too, so it is found here as well.
        if (get_current_principal in calls) != (access.kind in ("caller", "roles")):
            wrong.append(f"{name} is declared {access.kind}")
        if presented_key_principal in calls and access is not PUBLIC:
            wrong.append(f"{name} reads an optional key but is declared {access.kind}")
    assert not wrong, wrong


async def test_without_a_credential_no_declared_route_answers(client: httpx.AsyncClient) -> None:
    """401, or for a web page the way to the login page; never the thing itself. The endorse
    form answers with the login page in place, which keeps what was typed for after the login."""
    wrong = []
    for name, (access, _) in sorted(TABLE.items()):
        if access is PUBLIC:
            continue
        method = name.split(" ", 1)[0]
        form = {"party": "XA", "number": "XA-0001", "token": "t"}
        answer = await client.request(method, _url(name), data=form)
        if name == "POST /web/endorse":
            login = 'id="login-form"' in answer.text and 'action="/web/login?' in answer.text
            expected = (200, True)
        else:
            login = answer.headers.get("location", "").split("?")[0] == "/web/login"
            expected = (303, True) if name.startswith(("GET /web", "POST /web")) else (401, False)
        if (answer.status_code, login) != expected:
            wrong.append(f"{name}: {answer.status_code} {answer.text[:120]}")
    assert not wrong, wrong


def _key_of_role(make_user: MakeUser, database: Database, role: Role) -> str:
    party = SECRETARIAT_PARTY if role is Role.SECRETARIAT else "XA"
    make_user(f"only-{role.value}", party=party, roles=(role,))
    with database.unit_of_work() as session:
        return service.issue_api_key(session, service.get_user(session, f"only-{role.value}"))[1]


async def test_each_role_reaches_exactly_the_routes_its_rows_name(
    app: FastAPI, client: httpx.AsyncClient, sqlite_database: Database, make_user: MakeUser
) -> None:
    """A caller holding one role, of the Party in the address: refused for its role (403
    EPIX-AUTH-004, nothing looked up yet) exactly where its row does not name that role."""
    keys = {role: _key_of_role(make_user, sqlite_database, role) for role in Role}
    wrong = []
    for name, (access, _) in sorted(TABLE.items()):
        if access.kind != "roles":
            continue
        method = name.split(" ", 1)[0]
        for role, key in keys.items():
            answer = await client.request(
                method, _url(name), headers={"Authorization": f"Bearer {key}"}, json={}
            )
            refused = answer.status_code == 403 and answer.json()["code"] == "EPIX-AUTH-004"
            if refused == (role in access.roles):
                wrong.append(f"{name} as {role.value}: {answer.status_code} {answer.text[:120]}")
    assert not wrong, "\n".join(wrong)
