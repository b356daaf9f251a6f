"""Lookup at the border and status changes told to everyone who saw the permit."""

from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta

import httpx
import pytest
from lxml import etree
from sqlalchemy import func, select

from epix.api.routers.permits import PermitLookup
from epix.audit.models import AuditEvent
from epix.auth import service as users
from epix.auth.principal import Role
from epix.exchange.models import Permit
from epix.permits.samples import demo_permit
from epix.permits.writer import write_permit
from epix.registry import service as registry_service
from epix.signatures.sign import sign_document
from tests.exchange.conftest import Node, headers, submit

pytestmark = pytest.mark.anyio
MA = "management_authority"


def auth(node: Node, party: str, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {node.key(party, role)}"}


async def test_lookup_gives_permit_verdict_status_and_quantities(
    client: httpx.AsyncClient, node: Node
) -> None:
    body = await submit(client, node, "XA-LOOK-1")
    response = await client.get("/v1/permits/XA/XA-LOOK-1", headers=auth(node, "XB", "customs"))
    assert response.status_code == 200
    view = response.json()
    assert view["status"] == "issued" and view["signature"]["valid"] is True
    assert view["signature"]["signer"]["party"] == "XA"
    assert view["permit"]["number"] == "XA-LOOK-1"
    assert [line["permitted"] for line in view["lines"]] == [
        line["remaining"] for line in view["lines"]
    ]
    assert view["receipts"][0]["status"] in ("accepted", "accepted_with_warnings")
    assert [event["action"] for event in view["history"]] == ["message.submit"]
    # Whose customs may endorse which side (the check page offers the form to them only).
    assert (view["exporter_party"], view["importer_party"]) == ("XA", "XB")
    # /openapi.json documents the answer as it is: every field, each of its type.
    assert set(view) == set(PermitLookup.model_fields)
    PermitLookup.model_validate(view)
    xml = await client.get(view["xml_url"], headers=auth(node, "XB", "customs"))
    assert xml.content == body
    with node.database.unit_of_work() as session:
        kept_until = session.scalars(
            select(AuditEvent.purge_after).where(AuditEvent.action == "permit.lookup")
        ).all()
    # Both kept as long as the permit's records: the signed bytes' lookup was kept five years
    # after the lookup only, not after the permit's expiry (it did not give the validity).
    assert len(kept_until) == 2 and kept_until[0] == kept_until[1], kept_until


async def test_missing_and_forbidden_permits_look_the_same(
    client: httpx.AsyncClient, node: Node
) -> None:
    await submit(client, node, "XA-SECRET", token="s3cret-token")
    with node.database.unit_of_work() as session:
        user = users.create_user(
            session,
            username="xc-customs",
            party="XC",
            authority="XC Customs",
            roles=[Role.CUSTOMS],
        )
        _, third_party_key = users.issue_api_key(session, user)
    third_party = {"Authorization": f"Bearer {third_party_key}"}
    missing = await client.get("/v1/permits/XA/XA-NOPE", headers=third_party)
    forbidden = await client.get("/v1/permits/XA/XA-SECRET", headers=third_party)
    wrong_token = await client.get(
        "/v1/permits/XA/XA-SECRET", params={"token": "guessing-it"}, headers=third_party
    )
    for refusal in (missing, forbidden, wrong_token):
        assert refusal.status_code == 404 and refusal.json()["code"] == "EPIX-STATE-007"
    with_token = await client.get(
        "/v1/permits/XA/XA-SECRET", params={"token": "s3cret-token"}, headers=third_party
    )
    assert with_token.status_code == 200
    destination = await client.get("/v1/permits/XA/XA-SECRET", headers=auth(node, "XB", "customs"))
    assert destination.status_code == 200


async def test_refused_lookups_are_audited_with_their_code(
    client: httpx.AsyncClient, node: Node
) -> None:
    customs = auth(node, "XB", "customs")
    assert (await client.get("/v1/permits/XA/XA-GHOST", headers=customs)).status_code == 404
    assert (await client.get("/v1/permits/XA/XA-GHOST/xml", headers=customs)).status_code == 404
    with node.database.unit_of_work() as session:
        refusals = session.execute(
            select(AuditEvent.outcome, AuditEvent.permit_number, AuditEvent.party).where(
                AuditEvent.action == "permit.lookup"
            )
        ).all()
    assert sorted(refusals) == [("EPIX-STATE-007", "XA-GHOST", "XA")] * 2


async def test_cancel_tells_the_destination_and_everyone_who_looked(
    client: httpx.AsyncClient, node: Node
) -> None:
    await submit(client, node, "XA-CANCEL")
    await client.get("/v1/permits/XA/XA-CANCEL", headers=auth(node, "XB", "customs"))
    cancelled = await client.post(
        "/v1/permits/XA/XA-CANCEL/cancel",
        json={"reason": "issued in error"},
        headers=auth(node, "XA", MA),
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["notified"] == ["XB"]
    page = (await client.get("/v1/inbox", headers=auth(node, "XB", "customs"))).json()
    kinds = [entry["kind"] for entry in page["entries"]]
    assert kinds == ["message", "status"]
    document = await client.get(page["entries"][1]["url"], headers=auth(node, "XB", "customs"))
    root = etree.fromstring(document.content)
    assert root.findtext("{urn:epix:status:1}Status") == "cancelled"
    view = (
        await client.get("/v1/permits/XA/XA-CANCEL", headers=auth(node, "XB", "customs"))
    ).json()
    assert view["status"] == "cancelled"
    assert all(line["remaining"] == "0" for line in view["lines"])
    again = await client.post(
        "/v1/permits/XA/XA-CANCEL/cancel", json={}, headers=auth(node, "XA", MA)
    )
    assert again.status_code == 409 and again.json()["code"] == "EPIX-STATE-008"


async def test_replace_points_to_the_new_permit(client: httpx.AsyncClient, node: Node) -> None:
    await submit(client, node, "XA-OLD")
    await submit(client, node, "XA-NEW")
    replaced = await client.post(
        "/v1/permits/XA/XA-OLD/replace",
        json={"replaced_by": "XA-NEW", "reason": "typo in box 3"},
        headers=auth(node, "XA", MA),
    )
    assert replaced.status_code == 200, replaced.text
    view = (await client.get("/v1/permits/XA/XA-OLD", headers=auth(node, "XB", "customs"))).json()
    assert view["status"] == "replaced"
    assert view["replaced_by"] == {"issuing_party": "XA", "number": "XA-NEW"}


async def test_status_changes_refuse_bad_input(client: httpx.AsyncClient, node: Node) -> None:
    await submit(client, node, "XA-GUARD")
    ma = auth(node, "XA", MA)
    cases = [
        (
            "/v1/permits/XA/XA-GUARD/cancel",
            {"Content-Type": "application/json"},
            b"{not json",
            400,
            "EPIX-REQ-001",
        ),
        (
            "/v1/permits/XA/XA-GUARD/replace",
            {},
            b'{"replaced_by": "XA-NONE"}',
            404,
            "EPIX-STATE-007",
        ),
    ]
    for path, extra, content, status, code in cases:
        response = await client.post(
            path, content=content, headers={**ma, "Content-Type": "application/json", **extra}
        )
        assert response.status_code == status, response.text
        assert response.json()["code"] == code
    by_customs = await client.post(
        "/v1/permits/XA/XA-GUARD/cancel", json={}, headers=auth(node, "XB", "customs")
    )
    assert by_customs.status_code == 403 and by_customs.json()["code"] == "EPIX-AUTH-004"
    other_party = await client.post(
        "/v1/permits/XA/XA-GUARD/cancel", json={}, headers=auth(node, "XB", MA)
    )
    assert other_party.status_code == 403 and other_party.json()["code"] == "EPIX-AUTH-005"


async def test_history_shows_only_this_issuers_permit_not_a_namesake(
    client: httpx.AsyncClient, node: Node
) -> None:
    """Permit numbers are unique per issuing Party only: XB's permit of the same number (kept
    from third Parties by a security token) must not show in the history of XA's."""
    await submit(client, node, "SHARED-1")
    key_pem, cert_pem = node.demo.signing_identity("XB")
    namesake = sign_document(
        write_permit(demo_permit(number="SHARED-1", exporter_country="XB", importer_country="XA")),
        key_pem,
        cert_pem,
    )
    sent = headers(node.key("XB", MA), sender="XB", recipient="XA")
    sent["X-EPIX-Security-Token"] = "xb-only-token"
    response = await client.post("/v1/messages", content=namesake, headers=sent)
    assert response.status_code == 201, response.text
    with node.database.unit_of_work() as session:
        user = users.create_user(
            session, username="xc-officer", party="XC", authority="XC Customs", roles=[Role.CUSTOMS]
        )
        _, third_party_key = users.issue_api_key(session, user)
    third_party = {"Authorization": f"Bearer {third_party_key}"}
    hidden = await client.get("/v1/permits/XB/SHARED-1", headers=third_party)
    assert hidden.status_code == 404
    view = (await client.get("/v1/permits/XA/SHARED-1", headers=third_party)).json()
    assert [(event["action"], event["party"]) for event in view["history"]] == [
        ("message.submit", "XA")
    ]


async def test_a_replacement_must_be_an_open_permit_for_the_same_destination(
    client: httpx.AsyncClient, node: Node
) -> None:
    """Replacing by a cancelled or replaced permit (which would close a cycle A → B → A), an
    expired one, or one addressed to another Party leaves nothing valid for the consignment."""
    ma = auth(node, "XA", MA)
    for number in ("XA-R-A", "XA-R-B", "XA-R-C", "XA-R-GONE"):
        await submit(client, node, number)
    assert (
        await client.post("/v1/permits/XA/XA-R-GONE/cancel", json={}, headers=ma)
    ).status_code == 200
    replaced = await client.post(
        "/v1/permits/XA/XA-R-A/replace", json={"replaced_by": "XA-R-B"}, headers=ma
    )
    assert replaced.status_code == 200, replaced.text
    with node.database.unit_of_work() as session:
        secretariat = users.principal_of(users.get_user(session, "cites-secretariat"))
        registry_service.add_party(session, code="XC", name="Party XC", actor=secretariat)
    key_pem, cert_pem = node.demo.signing_identity("XA")
    for permit, recipient in (
        (demo_permit(number="XA-R-XC", importer_country="XC"), "XC"),
        (demo_permit(number="XA-R-OLD", issued=date.today() - timedelta(days=400)), "XB"),
    ):
        sent = await client.post(
            "/v1/messages",
            content=sign_document(write_permit(permit), key_pem, cert_pem),
            headers=headers(node.key("XA", MA), recipient=recipient),
        )
        assert sent.status_code == 201, sent.text
    for replaced, replacing in (
        ("XA-R-B", "XA-R-A"),  # replaced by B: A → B → A would leave no valid permit
        ("XA-R-C", "XA-R-GONE"),
        ("XA-R-C", "XA-R-OLD"),
        ("XA-R-C", "XA-R-XC"),
    ):
        refused = await client.post(
            f"/v1/permits/XA/{replaced}/replace", json={"replaced_by": replacing}, headers=ma
        )
        assert refused.status_code == 409, (replacing, refused.text)
        assert refused.json()["code"] == "EPIX-STATE-010", replacing
    with node.database.unit_of_work() as session:
        statuses = dict(
            session.execute(
                select(Permit.number, Permit.status).where(Permit.number.like("XA-R-%"))
            ).all()
        )
    assert statuses == {
        "XA-R-A": "replaced",
        "XA-R-B": "issued",
        "XA-R-C": "issued",
        "XA-R-GONE": "cancelled",
        "XA-R-OLD": "issued",
        "XA-R-XC": "issued",
    }


async def test_an_export_endorsed_permit_can_be_cancelled_but_not_replaced(
    client: httpx.AsyncClient, node: Node
) -> None:
    """A replacement starts with its full quantities: replacing a permit whose export is
    recorded would let the same consignment leave twice."""
    await submit(client, node, "XA-SHIPPED")
    await submit(client, node, "XA-SHIPPED-2")
    view = await client.get("/v1/permits/XA/XA-SHIPPED", headers=auth(node, "XA", "customs"))
    line = view.json()["lines"][0]
    endorsed = await client.post(
        "/v1/permits/XA/XA-SHIPPED/endorsements",
        json={
            "side": "export",
            "port": "XAABC",
            "date": date.today().isoformat(),
            "officer": "Officer Jane Roe",
            "transport_document": "AWB 176-12345675",
            "lines": [{"line_id": line["line_id"], "quantity": "1", "unit": line["unit"]}],
        },
        headers=auth(node, "XA", "customs"),
    )
    assert endorsed.status_code == 201, endorsed.text
    ma = auth(node, "XA", MA)
    refused = await client.post(
        "/v1/permits/XA/XA-SHIPPED/replace", json={"replaced_by": "XA-SHIPPED-2"}, headers=ma
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "EPIX-STATE-008"
    assert "Cancel it instead" in refused.json()["detail"]
    cancelled = await client.post("/v1/permits/XA/XA-SHIPPED/cancel", json={}, headers=ma)
    assert cancelled.status_code == 200, cancelled.text


async def test_tracking_a_message_is_audited_as_a_lookup(
    client: httpx.AsyncClient, node: Node
) -> None:
    """GET /v1/messages/{id} shows a permit's receipts, and no event said who read them."""
    body = node.signed_permit(number="XA-TRACK")
    sent = headers(node.key("XA", MA), message_id="track-1")
    assert (await client.post("/v1/messages", content=body, headers=sent)).status_code == 201
    with node.database.read() as session:
        before = session.scalar(select(func.max(AuditEvent.sequence)))
    too_long = "m" * 300
    reads = [
        (auth(node, "XA", MA), "track-1", 200),
        (auth(node, "XB", MA), "track-1", 404),  # XB sent no such message
        (auth(node, "XA", MA), too_long, 404),
    ]
    for caller, message_id, status in reads:
        answer = await client.get(f"/v1/messages/{message_id}", headers=caller)
        assert answer.status_code == status, answer.text
    with node.database.read() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.sequence > before).order_by(AuditEvent.sequence)
        ).all()
    assert [
        (
            e.action,
            e.outcome,
            e.actor_party,
            e.party,
            e.permit_number,
            e.message_id,
            e.path,
            e.payload_sha256,
            json.loads(e.detail),
        )
        for e in events
    ] == [
        (
            "permit.lookup",
            "ok",
            "XA",
            "XA",
            "XA-TRACK",
            "track-1",
            "/v1/messages/track-1",
            hashlib.sha256(body).hexdigest(),
            {"read": "message"},
        ),
        (
            "permit.lookup",
            "EPIX-REQ-005",
            "XB",
            "XB",
            None,
            "track-1",
            "/v1/messages/track-1",
            None,
            {"read": "message"},
        ),
        (
            "permit.lookup",
            "EPIX-REQ-005",
            "XA",
            "XA",
            None,
            None,
            f"/v1/messages/{too_long}",
            None,
            {"read": "message"},
        ),
    ]
