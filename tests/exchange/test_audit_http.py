"""Node operators verify the audit chain and sign checkpoints over HTTP."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select, update

from epix.audit.models import AuditEvent
from epix.auth.principal import Role
from epix.registry.roles import MANAGEMENT_AUTHORITY
from tests.exchange.conftest import Node, headers

pytestmark = pytest.mark.anyio


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_a_node_admin_signs_a_checkpoint_and_verifies_the_chain(
    node: Node, client: httpx.AsyncClient
) -> None:
    admin = node.key(node.settings.node_party, Role.NODE_ADMIN.value)
    submitted = await client.post(
        "/v1/messages",
        content=node.signed_permit(),
        headers=headers(node.key("XA", MANAGEMENT_AUTHORITY)),
    )
    assert submitted.status_code == 201

    made = await client.post("/v1/audit/checkpoints", headers=_bearer(admin))
    assert made.status_code == 201, made.text
    checkpoint = made.json()
    assert checkpoint["sequence"] > 1 and len(checkpoint["head_hash"]) == 64

    verified = await client.get("/v1/audit/verify", headers=_bearer(admin))
    report = verified.json()
    assert verified.status_code == 200 and report["ok"] is True
    assert report["checkpoints_verified"] >= 1 and report["checkpoints_pending"] == 0
    # The checkpoint itself is an audited action, attributed to the operator.
    with node.database.unit_of_work() as session:
        made_by = session.scalars(
            select(AuditEvent.actor_username).where(AuditEvent.action == "audit_checkpoint")
        ).all()
    assert made_by == ["node-admin"]


async def test_verification_over_http_names_the_first_altered_event(
    node: Node, client: httpx.AsyncClient
) -> None:
    admin = node.key(node.settings.node_party, Role.NODE_ADMIN.value)
    with node.database.unit_of_work() as session:
        session.execute(update(AuditEvent).where(AuditEvent.sequence == 2).values(outcome="x"))
    report = (await client.get("/v1/audit/verify", headers=_bearer(admin))).json()
    assert report["ok"] is False and report["broken_at"] == 2
    assert report["findings"][0]["code"].startswith("EPIX-AUDIT-")


async def test_only_node_admins_reach_the_audit_routes(
    node: Node, client: httpx.AsyncClient
) -> None:
    authority = _bearer(node.key("XA", MANAGEMENT_AUTHORITY))
    refused = [
        await client.get("/v1/audit/verify", headers=authority),
        await client.post("/v1/audit/checkpoints", headers=authority),
        await client.get("/v1/audit/verify"),
    ]
    assert [r.status_code for r in refused] == [403, 403, 401]
    assert [r.json()["errors"][0]["code"] for r in refused] == [
        "EPIX-AUTH-004",
        "EPIX-AUTH-004",
        "EPIX-AUTH-001",
    ]


async def test_a_refusal_on_a_long_path_is_audited_with_the_path_cut_short(
    node: Node, client: httpx.AsyncClient
) -> None:
    """The path column holds 2,000 characters: on PostgreSQL a longer path made the audit
    insert fail, so a wrong credential (or a refused registry change) sent to a long URL was
    neither audited nor counted by the credential throttle, and was answered 400 instead."""
    long_number = "A" * 3000
    wrong = await client.get(f"/v1/permits/XA/{long_number}", headers=_bearer("epix_wrong"))
    change = await client.put(
        f"/v1/registry/parties/{long_number}/endpoint",
        json={"url": "https://epix.example.org"},
        headers=_bearer(node.key("XA", MANAGEMENT_AUTHORITY)),
    )
    assert [wrong.status_code, change.status_code] == [401, 403]
    with node.database.unit_of_work() as session:
        paths = session.execute(
            select(AuditEvent.action, AuditEvent.path).where(
                AuditEvent.action.in_(["auth.refused", "registry.change"])
            )
        ).all()
    assert [action for action, _ in paths] == ["auth.refused", "registry.change"]
    assert all(len(path) == 2000 and path.endswith("…") for _, path in paths)
    assert paths[0][1].startswith("/v1/permits/XA/AAAA")


async def test_a_refusal_from_a_long_client_address_is_audited_with_it_cut_short(
    node: Node,
) -> None:
    """The address column holds 64 characters, but behind a proxy that passes X-Forwarded-For
    through (uvicorn trusts it from 127.0.0.1) the client names its own address: a longer one
    made the audit insert fail on PostgreSQL (a wrong credential answered 400, unaudited,
    uncounted by the throttle) and was kept whole on SQLite."""
    address = "203.0.113.7, " * 10
    transport = httpx.ASGITransport(app=node.app, client=(address, 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        wrong = await client.get("/v1/permits/XA/XA-0001", headers=_bearer("epix_wrong"))
    assert wrong.status_code == 401
    with node.database.unit_of_work() as session:
        kept = session.scalars(
            select(AuditEvent.remote_addr).where(AuditEvent.action == "auth.refused")
        ).all()
    assert kept == [address[:63] + "…"]
