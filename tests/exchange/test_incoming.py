"""Endorsements and status changes handed in on POST /v1/messages by another Party's node."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import anyio
import httpx
import pytest
from lxml import etree
from sqlalchemy import func, select

from epix.audit.models import AuditEvent
from epix.audit.service import earliest_purge_date
from epix.auth import service as auth
from epix.auth.principal import Principal, Role
from epix.db import Database
from epix.delivery.models import OutboxMessage
from epix.delivery.webhooks import create_subscription, webhook_key
from epix.endorsements.document import (
    EndorsedLine,
    EndorsementDocument,
    Side,
    write_endorsement,
)
from epix.exchange import incoming
from epix.exchange.envelope import Envelope
from epix.exchange.models import InboxEntry, Message, Permit
from epix.exchange.node_identity import node_identity
from epix.exchange.service import sha256_hex
from epix.exchange.status import status_xml
from epix.registry import repository
from epix.registry import service as registry
from epix.registry.roles import CUSTOMS, MANAGEMENT_AUTHORITY, NODE
from epix.settings import NodeMode
from epix.signatures.sign import sign_document
from epix.xml.namespaces import EPIX_RECEIPT, EPIX_STATUS
from tests.exchange.conftest import Node, headers, make_node
from tests.pki import Identity, make_identity

pytestmark = pytest.mark.anyio


@dataclass
class Peer:
    """Another Party's node as this node knows it: its registered node key and its API key."""

    party: str
    identity: Identity
    api_key: str


def _add_peer(node: Node, party: str) -> Peer:
    identity = make_identity(f"EPIX node of {party} (TEST)", party=party, kind="ec", size=256)
    with node.database.unit_of_work() as session:
        actor = auth.principal_of(auth.get_user(session, "cites-secretariat"))
        if repository.get_party(session, party) is None:
            registry.add_party(session, code=party, name=f"Party {party}", actor=actor)
        authority = registry.add_authority(
            session, party=party, kind=NODE, name=f"EPIX node {party}", actor=actor
        )
        registry.add_certificate(
            session, authority_id=authority.id, pem=identity.cert_pem, actor=actor
        )
        user = auth.create_user(
            session,
            username=f"node-{party.lower()}",
            party=party,
            authority=f"EPIX node of {party}",
            roles=[Role.PEER_NODE],
        )
        _, key = auth.issue_api_key(session, user)
    return Peer(party, identity, key)


def _client(node: Node) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app), base_url="http://t")


@pytest.fixture
def issuer(tmp_path: Path, sqlite_database: Database) -> Node:
    """XA's own node (party mode): it issues permits and gets XB's endorsements back."""
    return make_node(tmp_path, sqlite_database, node_mode=NodeMode.PARTY, node_party="XA")


@pytest.fixture
async def issuer_client(issuer: Node) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(issuer) as client:
        yield client


async def _submit_permit(node: Node, client: httpx.AsyncClient, key: str) -> Permit:
    body = node.signed_permit(lines=2)
    response = await client.post("/v1/messages", content=body, headers=headers(key))
    assert response.status_code == 201, response.text
    with node.database.unit_of_work() as session:
        message = session.scalars(select(Message).where(Message.body == body)).one()
        permit = session.scalars(select(Permit).where(Permit.message_pk == message.id)).one()
        session.expunge(permit)
        return permit


def _endorsement(
    permit: Permit,
    peer: Peer,
    *,
    endorsing_party: str | None = None,
    quantity: str = "1",
    side: Side = Side.IMPORT,
) -> bytes:
    line = permit.lines[0]
    document = EndorsementDocument(
        endorsement_id=str(uuid.uuid4()),
        side=side,
        issuing_party=permit.issuing_party,
        permit_number=permit.number,
        permit_sha256=permit.signed_sha256,
        endorsing_party=endorsing_party or peer.party,
        authority=f"{peer.party} customs",
        officer="Officer Test",
        port="NLRTM",
        endorsed_on=datetime.now(UTC).date(),
        transport_document="AWB 1",
        declaration_reference=None,
        issued_at=datetime.now(UTC),
        lines=(EndorsedLine(line.line_id, Decimal(quantity), line.unit or "NAR"),),
    )
    return sign_document(write_endorsement(document), peer.identity.key_pem, peer.identity.cert_pem)


def _peer_headers(peer: Peer, kind: str, to: str, message_id: str | None = None) -> dict[str, str]:
    return headers(peer.api_key, sender=peer.party, recipient=to, message_id=message_id) | {
        "X-EPIX-Document-Type": kind
    }


def _codes(response: httpx.Response) -> list[str]:
    return [error["code"] for error in response.json()["errors"]]


async def test_a_peers_endorsement_reaches_the_issuers_inbox_once_and_its_ledger(
    issuer: Node, issuer_client: httpx.AsyncClient
) -> None:
    peer = _add_peer(issuer, "XB")
    with issuer.database.unit_of_work() as session:
        create_subscription(
            session,
            party="XA",
            url="https://xa.example/hooks",
            events=["endorsement.received"],
            created_by="xa-ma",
            node_base_url=issuer.settings.node_base_url,
            secret_key=webhook_key(issuer.settings),
        )
    permit = await _submit_permit(issuer, issuer_client, issuer.key("XA", MANAGEMENT_AUTHORITY))
    body = _endorsement(permit, peer)
    sent = _peer_headers(peer, "endorsement", "XA")

    first = await issuer_client.post("/v1/messages", content=body, headers=sent)
    again = await issuer_client.post("/v1/messages", content=body, headers=sent)

    assert first.status_code == 201, first.text
    assert again.status_code == 200 and again.content == first.content
    with issuer.database.unit_of_work() as session:
        entries = session.scalar(
            select(func.count())
            .select_from(InboxEntry)
            .join(Message, InboxEntry.message_pk == Message.id)
            .where(Message.document_type == "endorsement", InboxEntry.recipient_party == "XA")
        )
        stored = session.scalars(select(Message).where(Message.document_type == "endorsement"))
        hooks = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "webhook"))
        assert [m.body for m in stored] == [body]
        assert [h.headers["X-EPIX-Event"] for h in hooks] == ["endorsement.received"]
    assert entries == 1
    view = (
        await issuer_client.get(
            f"/v1/permits/XA/{permit.number}",
            headers={"Authorization": f"Bearer {issuer.key('XA', MANAGEMENT_AUTHORITY)}"},
        )
    ).json()
    assert view["status"] == "used"
    assert "endorsement.receive" in [event["action"] for event in view["history"]]


async def test_a_received_endorsement_is_one_audit_event_with_what_the_ledger_entered(
    issuer: Node, issuer_client: httpx.AsyncClient
) -> None:
    """A received endorsement wrote two events in one transaction by the same peer about the
    same bytes: ``endorsement.receive`` (the receipt) and ``endorsement.record`` restating it
    with the ledger's details, so the permit's history showed one arrival twice. Now the
    receipt's event alone records it, its effect carrying the ledger entry, and it is kept as
    long as the permit's own events (the ``endorsement.record`` it replaces was)."""
    peer = _add_peer(issuer, "XB")
    permit = await _submit_permit(issuer, issuer_client, issuer.key("XA", MANAGEMENT_AUTHORITY))
    body = _endorsement(permit, peer, quantity="2")

    answer = await issuer_client.post(
        "/v1/messages", content=body, headers=_peer_headers(peer, "endorsement", "XA")
    )

    assert answer.status_code == 201, answer.text
    with issuer.database.unit_of_work() as session:
        events = session.scalars(
            select(AuditEvent).where(
                AuditEvent.permit_number == permit.number,
                AuditEvent.action.like("endorsement.%"),
            )
        ).all()
        stored = session.get(Permit, permit.id)
        assert stored is not None and stored.valid_until is not None
        valid_until = stored.valid_until.date()
    assert [event.action for event in events] == ["endorsement.receive"]
    event = events[0]
    assert event.actor_username == "node-xb" and event.payload_sha256 == sha256_hex(body)
    effect = json.loads(event.detail)["effect"]
    assert effect["ledger"] == "recorded"
    assert effect["entry"] == {
        "side": "import",
        "port": "NLRTM",
        "officer": "Officer Test",
        "transport_document": "AWB 1",
        "reservation_id": None,
        "permit_sha256": permit.signed_sha256,
        "status": {"from": "issued", "to": "used"},
        "signed_by": "node",
        "lines": {permit.lines[0].line_id: "2"},
        "notified": [],
    }
    assert event.purge_after == earliest_purge_date(
        event.occurred_at.date(),
        retention_years=issuer.settings.retention_years,
        permit_valid_until=valid_until,
    )


async def test_the_same_message_id_with_other_bytes_is_refused(
    issuer: Node, issuer_client: httpx.AsyncClient
) -> None:
    peer = _add_peer(issuer, "XB")
    permit = await _submit_permit(issuer, issuer_client, issuer.key("XA", MANAGEMENT_AUTHORITY))
    sent = _peer_headers(peer, "endorsement", "XA", message_id="end-1")
    first = await issuer_client.post(
        "/v1/messages", content=_endorsement(permit, peer), headers=sent
    )
    other = await issuer_client.post(
        "/v1/messages", content=_endorsement(permit, peer), headers=sent
    )
    assert first.status_code == 201
    assert other.status_code == 409 and _codes(other) == ["EPIX-MSG-001"]


async def test_an_endorsement_the_registry_does_not_vouch_for_is_refused_before_storage(
    issuer: Node, issuer_client: httpx.AsyncClient
) -> None:
    peer = _add_peer(issuer, "XB")
    permit = await _submit_permit(issuer, issuer_client, issuer.key("XA", MANAGEMENT_AUTHORITY))
    stranger = Peer(
        "XB", make_identity("Not registered", party="XB", kind="ec", size=256), peer.api_key
    )
    response = await issuer_client.post(
        "/v1/messages",
        content=_endorsement(permit, stranger),
        headers=_peer_headers(peer, "endorsement", "XA"),
    )
    assert response.status_code == 422 and _codes(response) == ["EPIX-SIG-012"]
    assert "receipt" in response.json()
    with issuer.database.unit_of_work() as session:
        assert (
            session.scalar(
                select(func.count()).select_from(Message).where(Message.document_type != "permit")
            )
            == 0
        )


async def test_an_endorsement_by_another_party_than_the_sender_is_refused(
    issuer: Node, issuer_client: httpx.AsyncClient
) -> None:
    peer = _add_peer(issuer, "XB")
    permit = await _submit_permit(issuer, issuer_client, issuer.key("XA", MANAGEMENT_AUTHORITY))
    response = await issuer_client.post(
        "/v1/messages",
        content=_endorsement(permit, peer, endorsing_party="XC"),
        headers=_peer_headers(peer, "endorsement", "XA"),
    )
    assert response.status_code == 422 and _codes(response) == ["EPIX-MSG-009"]


async def test_a_permit_is_not_an_endorsement(
    issuer: Node, issuer_client: httpx.AsyncClient
) -> None:
    peer = _add_peer(issuer, "XB")
    response = await issuer_client.post(
        "/v1/messages",
        content=issuer.signed_permit(),
        headers=_peer_headers(peer, "endorsement", "XA"),
    )
    assert response.status_code == 422 and _codes(response) == ["EPIX-MSG-004"]


async def test_a_hosted_partys_customs_must_endorse_through_the_ledger_route(
    issuer: Node, issuer_client: httpx.AsyncClient
) -> None:
    response = await issuer_client.post(
        "/v1/messages",
        content=b"<x/>",
        headers=headers(issuer.key("XA", CUSTOMS), recipient="XB")
        | {"X-EPIX-Document-Type": "endorsement"},
    )
    assert response.status_code == 422 and _codes(response) == ["EPIX-MSG-004"]
    assert "/endorsements" in response.json()["errors"][0]["message"]


async def test_customs_may_not_submit_a_permit(
    issuer: Node, issuer_client: httpx.AsyncClient
) -> None:
    response = await issuer_client.post(
        "/v1/messages", content=issuer.signed_permit(), headers=headers(issuer.key("XA", CUSTOMS))
    )
    assert response.status_code == 403 and _codes(response) == ["EPIX-AUTH-004"]


def _status(permit: Permit, signer: tuple[bytes, bytes], status: str = "cancelled") -> bytes:
    actor = Principal(1, "xa-ma", "XA", "XA MA", frozenset({Role.MANAGEMENT_AUTHORITY}))
    return sign_document(status_xml(permit, status, actor, "issued in error", None), *signer)


async def test_a_cancellation_from_the_issuers_node_cancels_the_copy_here(
    tmp_path: Path, sqlite_database: Database
) -> None:
    node = make_node(tmp_path, sqlite_database, node_mode=NodeMode.PARTY, node_party="XB")
    issuer_node = _add_peer(node, "XA")
    async with _client(node) as client:
        permit = await _submit_permit(node, client, issuer_node.api_key)
        signer = node.demo.signing_identity("XA")
        cancelled = await client.post(
            "/v1/messages",
            content=_status(permit, signer),
            headers=_peer_headers(issuer_node, "status", "XB"),
        )
        view = (
            await client.get(
                f"/v1/permits/XA/{permit.number}",
                headers={"Authorization": f"Bearer {node.key('XB', CUSTOMS)}"},
            )
        ).json()
    assert cancelled.status_code == 201, cancelled.text
    assert view["status"] == "cancelled" and view["status_reason"] == "issued in error"
    assert "status.receive" in [event["action"] for event in view["history"]]


async def test_only_the_issuer_may_cancel_its_permit(
    tmp_path: Path, sqlite_database: Database
) -> None:
    node = make_node(tmp_path, sqlite_database, node_mode=NodeMode.PARTY, node_party="XB")
    issuer_node = _add_peer(node, "XA")
    other = _add_peer(node, "XC")
    async with _client(node) as client:
        permit = await _submit_permit(node, client, issuer_node.api_key)
        response = await client.post(
            "/v1/messages",
            content=_status(permit, (other.identity.key_pem, other.identity.cert_pem)),
            headers=_peer_headers(other, "status", "XB"),
        )
    assert response.status_code == 422 and _codes(response) == ["EPIX-MSG-009"]


async def test_an_export_endorsement_tells_the_importer_the_permit_is_endorsed(
    tmp_path: Path, sqlite_database: Database
) -> None:
    hub = make_node(tmp_path, sqlite_database)
    with hub.database.unit_of_work() as session:
        create_subscription(
            session,
            party="XB",
            url="https://xb.example/hooks",
            events=["status.changed"],
            created_by="xb-ma",
            node_base_url=hub.settings.node_base_url,
            secret_key=webhook_key(hub.settings),
        )
    async with _client(hub) as client:
        permit = await _submit_permit(hub, client, hub.key("XA", MANAGEMENT_AUTHORITY))
        line = permit.lines[0]
        endorsed = await client.post(
            f"/v1/permits/XA/{permit.number}/endorsements",
            headers={"Authorization": f"Bearer {hub.key('XA', CUSTOMS)}"},
            json={
                "side": "export",
                "port": "NLRTM",
                "date": datetime.now(UTC).date().isoformat(),
                "officer": "Officer A",
                "transport_document": "AWB 2",
                "lines": [{"line_id": line.line_id, "quantity": "1", "unit": line.unit or "NAR"}],
            },
        )
    assert endorsed.status_code == 201, endorsed.text
    with hub.database.unit_of_work() as session:
        notes = session.scalars(
            select(InboxEntry).where(
                InboxEntry.recipient_party == "XB", InboxEntry.kind == "status"
            )
        ).all()
        hooks = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "webhook")).all()
        assert len(notes) == 1 and notes[0].payload is not None
        assert b"<Status>endorsed</Status>" in notes[0].payload
        assert EPIX_STATUS.encode() in notes[0].payload
        assert [h.headers["X-EPIX-Event"] for h in hooks if h.destination_party == "XB"] == [
            "status.changed"
        ]


async def test_an_endorsement_the_issuers_ledger_refuses_is_kept_and_the_receipt_says_so(
    issuer: Node, issuer_client: httpx.AsyncClient
) -> None:
    peer = _add_peer(issuer, "XB")
    permit = await _submit_permit(issuer, issuer_client, issuer.key("XA", MANAGEMENT_AUTHORITY))
    body = _endorsement(permit, peer, quantity="1000000")  # far beyond the permitted quantity

    answer = await issuer_client.post(
        "/v1/messages", content=body, headers=_peer_headers(peer, "endorsement", "XA")
    )

    assert answer.status_code == 201, answer.text
    assert answer.headers["X-EPIX-Receipt-Status"] == "accepted_with_warnings"
    receipt = etree.fromstring(answer.content)
    codes = [f.get("code") for f in receipt.iter(f"{{{EPIX_RECEIPT}}}Finding")]
    assert codes == ["EPIX-QTY-011"]
    message = receipt.findtext(f".//{{{EPIX_RECEIPT}}}Message") or ""
    assert "EPIX-QTY-001" in message and permit.number in message
    with issuer.database.unit_of_work() as session:
        kept = session.scalars(select(Message.body).where(Message.document_type == "endorsement"))
        assert list(kept) == [body]
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "endorsement.receive")
        ).one()
    detail = json.loads(event.detail)
    assert detail["effect"]["ledger"] == "not recorded" and detail["codes"] == ["EPIX-QTY-011"]
    view = (
        await issuer_client.get(
            f"/v1/permits/XA/{permit.number}",
            headers={"Authorization": f"Bearer {issuer.key('XA', MANAGEMENT_AUTHORITY)}"},
        )
    ).json()
    assert view["status"] == "issued"  # the ledger did not move


async def test_an_endorsement_made_in_time_is_recorded_though_the_permit_expired_in_transit(
    issuer: Node, issuer_client: httpx.AsyncClient
) -> None:
    """Delivery retries for days: the endorsing node recorded the inspection while the permit
    was valid; the issuer's ledger judged validity at arrival and refused it (EPIX-STATE-001),
    so the two nodes disagreed on the permit's use for good."""
    peer = _add_peer(issuer, "XB")
    permit = await _submit_permit(issuer, issuer_client, issuer.key("XA", MANAGEMENT_AUTHORITY))
    body = _endorsement(permit, peer)  # issued now, while the permit is valid
    with issuer.database.unit_of_work() as session:
        stored = session.get(Permit, permit.id)
        assert stored is not None
        stored.valid_until = datetime.now(UTC) + timedelta(milliseconds=1)
    await anyio.sleep(0.01)  # the permit expires while the endorsement travels

    answer = await issuer_client.post(
        "/v1/messages", content=body, headers=_peer_headers(peer, "endorsement", "XA")
    )

    assert answer.status_code == 201, answer.text
    assert answer.headers["X-EPIX-Receipt-Status"] == "accepted"
    with issuer.database.unit_of_work() as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "endorsement.receive")
        ).one()
        assert json.loads(event.detail)["effect"]["ledger"] == "recorded"
        stored = session.get(Permit, permit.id)
        assert stored is not None and stored.status == "used"


async def test_an_endorsement_issued_after_the_permit_expired_is_still_refused(
    issuer: Node, issuer_client: httpx.AsyncClient
) -> None:
    peer = _add_peer(issuer, "XB")
    permit = await _submit_permit(issuer, issuer_client, issuer.key("XA", MANAGEMENT_AUTHORITY))
    with issuer.database.unit_of_work() as session:
        stored = session.get(Permit, permit.id)
        assert stored is not None
        stored.valid_until = datetime.now(UTC) - timedelta(hours=1)
    answer = await issuer_client.post(
        "/v1/messages",
        content=_endorsement(permit, peer),
        headers=_peer_headers(peer, "endorsement", "XA"),
    )
    assert answer.headers["X-EPIX-Receipt-Status"] == "accepted_with_warnings"
    message = etree.fromstring(answer.content).findtext(f".//{{{EPIX_RECEIPT}}}Message") or ""
    assert "EPIX-STATE-001" in message


@pytest.mark.parametrize("status", ["cancelled", "replaced"])
async def test_an_endorsement_made_before_the_issuer_withdrew_the_permit_is_recorded(
    issuer: Node, issuer_client: httpx.AsyncClient, status: str
) -> None:
    """The inspection happened while the permit stood; the issuer cancelled (or replaced) it
    while the endorsement travelled. Refused (EPIX-STATE-003/004), the quantities that crossed
    the border were missing from the issuer's ledger for good; now they are recorded and the
    permit stays withdrawn."""
    peer = _add_peer(issuer, "XB")
    permit = await _submit_permit(issuer, issuer_client, issuer.key("XA", MANAGEMENT_AUTHORITY))
    body = _endorsement(permit, peer)  # issued now, before the withdrawal
    await anyio.sleep(0.01)
    with issuer.database.unit_of_work() as session:
        stored = session.get(Permit, permit.id)
        assert stored is not None
        stored.status, stored.status_changed_at = status, datetime.now(UTC)

    answer = await issuer_client.post(
        "/v1/messages", content=body, headers=_peer_headers(peer, "endorsement", "XA")
    )

    assert answer.headers["X-EPIX-Receipt-Status"] == "accepted", answer.text
    with issuer.database.unit_of_work() as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "endorsement.receive")
        ).one()
        assert json.loads(event.detail)["effect"]["ledger"] == "recorded"
        stored = session.get(Permit, permit.id)
        assert stored is not None and stored.status == status


@pytest.mark.parametrize(("status", "code"), [("cancelled", "3"), ("replaced", "4")])
async def test_an_endorsement_issued_after_the_issuer_withdrew_the_permit_is_refused(
    issuer: Node, issuer_client: httpx.AsyncClient, status: str, code: str
) -> None:
    peer = _add_peer(issuer, "XB")
    permit = await _submit_permit(issuer, issuer_client, issuer.key("XA", MANAGEMENT_AUTHORITY))
    with issuer.database.unit_of_work() as session:
        stored = session.get(Permit, permit.id)
        assert stored is not None
        stored.status = status
        stored.status_changed_at = datetime.now(UTC) - timedelta(hours=1)
    answer = await issuer_client.post(
        "/v1/messages",
        content=_endorsement(permit, peer),
        headers=_peer_headers(peer, "endorsement", "XA"),
    )
    assert answer.headers["X-EPIX-Receipt-Status"] == "accepted_with_warnings"
    message = etree.fromstring(answer.content).findtext(f".//{{{EPIX_RECEIPT}}}Message") or ""
    assert f"EPIX-STATE-00{code}" in message


async def test_an_export_endorsement_arriving_after_the_import_inspection_is_recorded(
    tmp_path: Path, sqlite_database: Database
) -> None:
    """At the importer's node the import was inspected (the permit is used) before the issuer's
    export endorsement, made earlier, arrived: it was refused (EPIX-STATE-005), so that node's
    ledger never showed what was exported. It is recorded now; the permit stays used, and an
    export endorsement made after the import is still refused."""
    node = make_node(tmp_path, sqlite_database, node_mode=NodeMode.PARTY, node_party="XB")
    issuer_node = _add_peer(node, "XA")
    customs = {"Authorization": f"Bearer {node.key('XB', CUSTOMS)}"}
    async with _client(node) as client:
        permit = await _submit_permit(node, client, issuer_node.api_key)
        exported_earlier = _endorsement(permit, issuer_node, side=Side.EXPORT, quantity="1")
        await anyio.sleep(0.01)
        line = permit.lines[0]
        imported = await client.post(
            f"/v1/permits/XA/{permit.number}/endorsements",
            headers=customs,
            json={
                "side": "import",
                "port": "NLRTM",
                "date": datetime.now(UTC).date().isoformat(),
                "officer": "Officer B",
                "transport_document": "AWB 1",
                "lines": [{"line_id": line.line_id, "quantity": "1", "unit": line.unit or "NAR"}],
            },
        )
        assert imported.status_code == 201, imported.text
        await anyio.sleep(0.01)
        exported_later = _endorsement(permit, issuer_node, side=Side.EXPORT, quantity="1")
        late = await client.post(
            "/v1/messages",
            content=exported_earlier,
            headers=_peer_headers(issuer_node, "endorsement", "XB"),
        )
        after = await client.post(
            "/v1/messages",
            content=exported_later,
            headers=_peer_headers(issuer_node, "endorsement", "XB"),
        )
        listed = (
            await client.get(f"/v1/permits/XA/{permit.number}/endorsements", headers=customs)
        ).json()
    assert late.headers["X-EPIX-Receipt-Status"] == "accepted", late.text
    assert after.headers["X-EPIX-Receipt-Status"] == "accepted_with_warnings"
    message = etree.fromstring(after.content).findtext(f".//{{{EPIX_RECEIPT}}}Message") or ""
    assert "EPIX-STATE-005" in message
    assert sorted(e["side"] for e in listed) == ["export", "import"]
    assert {e["permit"]["status"] for e in listed} == {"used"}


async def test_the_importers_node_takes_the_export_endorsement_into_its_ledger(
    tmp_path: Path, sqlite_database: Database
) -> None:
    """The issuer's node sends its export endorsement to the importer's node too; there it
    holds the import inspection to what was exported, and the watchers are not told of the
    'endorsed' status a second time (the issuer's node tells them)."""
    node = make_node(tmp_path, sqlite_database, node_mode=NodeMode.PARTY, node_party="XB")
    issuer_node = _add_peer(node, "XA")
    customs = {"Authorization": f"Bearer {node.key('XB', CUSTOMS)}"}
    async with _client(node) as client:
        permit = await _submit_permit(node, client, issuer_node.api_key)
        looked_up = await client.get(f"/v1/permits/XA/{permit.number}", headers=customs)
        exported = await client.post(
            "/v1/messages",
            content=_endorsement(permit, issuer_node, side=Side.EXPORT, quantity="1"),
            headers=_peer_headers(issuer_node, "endorsement", "XB"),
        )
        # An import inspection goes to the issuer only.
        misrouted = await client.post(
            "/v1/messages",
            content=_endorsement(permit, issuer_node),
            headers=_peer_headers(issuer_node, "endorsement", "XB"),
        )
        ledger = (
            await client.get(f"/v1/permits/XA/{permit.number}/ledger", headers=customs)
        ).json()
    assert looked_up.status_code == 200
    assert exported.status_code == 201, exported.text
    assert exported.headers["X-EPIX-Receipt-Status"] == "accepted"
    assert misrouted.status_code == 422 and _codes(misrouted) == ["EPIX-MSG-009"]
    assert ledger["permit"]["status"] == "endorsed"
    assert ledger["lines"][0]["remaining_by_side"]["import"] == "1"
    with node.database.unit_of_work() as session:
        status_notes = session.scalars(
            select(InboxEntry).where(
                InboxEntry.recipient_party == "XB", InboxEntry.kind == "status"
            )
        ).all()
        endorsements_in_inbox = session.scalar(
            select(func.count())
            .select_from(InboxEntry)
            .join(Message, InboxEntry.message_pk == Message.id)
            .where(Message.document_type == "endorsement", InboxEntry.recipient_party == "XB")
        )
    assert status_notes == []
    assert endorsements_in_inbox == 1


async def test_a_peers_resent_endorsement_answered_with_the_first_receipt_is_audited(
    issuer: Node, issuer_client: httpx.AsyncClient
) -> None:
    """The peer's retry of a delivered endorsement (its answer lost) left no event."""
    peer = _add_peer(issuer, "XB")
    permit = await _submit_permit(issuer, issuer_client, issuer.key("XA", MANAGEMENT_AUTHORITY))
    body = _endorsement(permit, peer)
    sent = _peer_headers(peer, "endorsement", "XA", message_id="end-replay-1")
    first = await issuer_client.post("/v1/messages", content=body, headers=sent)
    again = await issuer_client.post("/v1/messages", content=body, headers=sent)
    assert (first.status_code, again.status_code) == (201, 200)
    with issuer.database.read() as session:
        events = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.message_id == "end-replay-1")
            .order_by(AuditEvent.sequence)
        ).all()
    assert [(e.action, e.actor_username) for e in events] == [
        ("endorsement.receive", "node-xb"),
        ("message.replay", "node-xb"),
    ]
    assert events[1].payload_sha256 == sha256_hex(body)


async def test_a_peers_resent_endorsement_gets_its_receipt_though_the_checks_changed_since(
    issuer: Node, issuer_client: httpx.AsyncClient
) -> None:
    """The copy was judged again before the node looked for it: a check tightened in between
    (the nesting limit, as an operator's restart would) refused what the node holds."""
    peer = _add_peer(issuer, "XB")
    permit = await _submit_permit(issuer, issuer_client, issuer.key("XA", MANAGEMENT_AUTHORITY))
    body = _endorsement(permit, peer)
    sent = _peer_headers(peer, "endorsement", "XA", message_id="end-replay-2")
    first = await issuer_client.post("/v1/messages", content=body, headers=sent)
    assert first.status_code == 201
    issuer.app.state.settings = issuer.settings.model_copy(update={"max_xml_depth": 2})
    again = await issuer_client.post("/v1/messages", content=body, headers=sent)
    assert again.status_code == 200 and again.content == first.content


async def test_a_copy_with_other_bytes_that_loses_the_race_is_refused_with_a_receipt(
    issuer: Node, issuer_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two copies of one message id with different bytes at once: the one whose insert loses
    to the other's commit was refused (EPIX-MSG-001) without the signed rejection receipt
    and without the audit event every other refusal gets. The other copy commits here
    between the loser's read phase and its write, as a concurrent request would."""
    peer = _add_peer(issuer, "XB")
    permit = await _submit_permit(issuer, issuer_client, issuer.key("XA", MANAGEMENT_AUTHORITY))
    winner, loser = _endorsement(permit, peer), _endorsement(permit, peer)
    sent = _peer_headers(peer, "endorsement", "XA", message_id="end-race-1")
    real_trust = incoming._trust
    with issuer.database.read() as session:
        peer_principal = auth.principal_of(auth.get_user(session, "node-xb"))

    def trust_then_lose_the_race(database: Database, envelope: Envelope, sha256: str) -> object:
        found = real_trust(database, envelope, sha256)
        monkeypatch.setattr(incoming, "_trust", real_trust)
        won = incoming.receive(
            database,
            envelope=envelope,
            body=winner,
            principal=peer_principal,
            settings=issuer.settings,
            identity=node_identity(issuer.settings.data_dir, issuer.settings.node_party),
        )
        assert won.accepted
        return found

    monkeypatch.setattr(incoming, "_trust", trust_then_lose_the_race)
    lost = await issuer_client.post("/v1/messages", content=loser, headers=sent)

    assert lost.status_code == 409 and _codes(lost) == ["EPIX-MSG-001"], lost.text
    receipt = etree.fromstring(base64.b64decode(lost.json()["receipt"]))
    assert receipt.findtext(f"{{{EPIX_RECEIPT}}}Status") == "rejected"
    with issuer.database.read() as session:
        events = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.message_id == "end-race-1")
            .order_by(AuditEvent.sequence)
        ).all()
    assert [(e.action, e.outcome) for e in events] == [
        ("endorsement.receive", "ok"),
        ("endorsement.receive", "EPIX-MSG-001"),
    ]
    assert events[1].payload_sha256 == sha256_hex(loser)
