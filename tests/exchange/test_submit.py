"""Submitting over HTTP: signed receipts, idempotency, fail-closed checks, bounded input."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from epix.audit.models import AuditEvent
from epix.audit.verify import verify_chain
from epix.auth import service as auth
from epix.db import Database
from epix.delivery.models import OutboxMessage
from epix.exchange.envelope import Envelope, build_envelope, envelope_from_headers
from epix.exchange.models import InboxEntry, Message, Permit, Receipt
from epix.exchange.node_identity import node_identity
from epix.permits.samples import demo_permit
from epix.permits.writer import write_permit
from epix.registry import service as registry_service
from epix.settings import NodeMode
from epix.signatures.sign import sign_document
from epix.signatures.trust import StaticTrustStore
from epix.signatures.verify import verify_document
from tests.conftest import need_command
from tests.exchange.conftest import Node, headers, make_node
from tests.pki import make_identity
from tests.signatures.forge import forge, load_key

pytestmark = pytest.mark.anyio
MA = "management_authority"
RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"


def stored(node: Node) -> tuple[int, int, int]:
    with node.database.unit_of_work() as session:
        return (
            session.scalar(select(func.count()).select_from(Message)) or 0,
            session.scalar(select(func.count()).select_from(Permit)) or 0,
            session.scalar(select(func.count()).select_from(InboxEntry)) or 0,
        )


def codes(response: httpx.Response) -> list[str]:
    return [error["code"] for error in response.json()["errors"]]


def verify_receipt(node: Node, receipt: bytes) -> etree._Element:
    identity = node_identity(node.settings.data_dir, node.settings.node_party)
    verdict = verify_document(
        receipt, party="XA", role="node", trust=StaticTrustStore([identity.trusted()])
    )
    assert verdict.valid, verdict.findings
    assert verdict.signed_element is not None
    return verdict.signed_element


def receipt_field(root: etree._Element, name: str) -> str | None:
    return root.findtext(f"{{urn:epix:receipt:1}}{name}")


async def test_accepted_submission_stores_exact_bytes_and_returns_a_signed_receipt(
    client: httpx.AsyncClient, node: Node
) -> None:
    body = node.signed_permit()
    response = await client.post(
        "/v1/messages", content=body, headers=headers(node.key("XA", MA), message_id="m-1")
    )
    assert response.status_code == 201
    receipt = verify_receipt(node, response.content)
    sha = hashlib.sha256(body).hexdigest()
    assert receipt_field(receipt, "MessageId") == "m-1"
    assert receipt_field(receipt, "DocumentSHA256") == sha
    assert receipt_field(receipt, "Status") in ("accepted", "accepted_with_warnings")
    with node.database.unit_of_work() as session:
        message = session.scalars(select(Message)).one()
        assert message.body == body and message.sha256 == sha
        assert session.scalars(select(Receipt)).one().body == response.content


async def test_envelope_document_carries_the_same_bytes(
    client: httpx.AsyncClient, node: Node
) -> None:
    body = node.signed_permit()
    envelope = build_envelope(
        Envelope("env-1", "XA", "XB", "permit", "conv-1", datetime.now(UTC)), body
    )
    response = await client.post(
        "/v1/messages",
        content=envelope,
        headers={
            "Authorization": f"Bearer {node.key('XA', MA)}",
            "Content-Type": "application/vnd.epix.envelope+xml",
        },
    )
    assert response.status_code == 201
    with node.database.unit_of_work() as session:
        message = session.scalars(select(Message)).one()
        assert message.body == body and message.conversation_id == "conv-1"


async def test_an_envelope_payload_in_base64_lines_is_read_like_one_line(
    client: httpx.AsyncClient, node: Node
) -> None:
    """xs:base64Binary allows whitespace, and MIME encoders (``openssl base64``, Java's MIME
    encoder) break lines at 76 characters: such a schema-valid envelope was refused with
    EPIX-SCHEMA-001 "Only base64 data is allowed"."""
    body = node.signed_permit()
    root = etree.fromstring(build_envelope(Envelope("env-lines", "XA", "XB", "permit"), body))
    payload = root.find("{urn:epix:envelope:1}Payload")
    assert payload is not None and payload.text is not None
    one_line = payload.text
    payload.text = "\n" + "\r\n".join(one_line[i : i + 76] for i in range(0, len(one_line), 76))
    payload.text += "\n\t "
    response = await client.post(
        "/v1/messages",
        content=etree.tostring(root),
        headers={
            "Authorization": f"Bearer {node.key('XA', MA)}",
            "Content-Type": "application/vnd.epix.envelope+xml",
        },
    )
    assert response.status_code == 201, response.text
    with node.database.unit_of_work() as session:
        assert session.scalars(select(Message)).one().body == body

    payload.text = one_line[:-4] + "!" + one_line[-3:]  # schema-invalid: refused, located
    root.find("{urn:epix:envelope:1}MessageId").text = "env-bad"  # type: ignore[union-attr]
    response = await client.post(
        "/v1/messages",
        content=etree.tostring(root),
        headers={
            "Authorization": f"Bearer {node.key('XA', MA)}",
            "Content-Type": "application/vnd.epix.envelope+xml",
        },
    )
    assert response.status_code == 422 and codes(response) == ["EPIX-SCHEMA-001"]


async def test_a_message_forwarded_to_a_peer_keeps_its_conversation_id(
    tmp_path: Path, sqlite_database: Database
) -> None:
    """On a Party node the envelope travels to the peer as X-EPIX-* headers; the
    conversation id was stored here but left out of the forwarded envelope."""
    node = make_node(tmp_path, sqlite_database, node_mode=NodeMode.PARTY, node_party="XA")
    sent = headers(node.key("XA", MA), message_id="fwd-1")
    sent["X-EPIX-Conversation-Id"] = "conv-fwd-1"
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=node.app), base_url="http://testserver"
    ) as client:
        response = await client.post("/v1/messages", content=node.signed_permit(), headers=sent)
    assert response.status_code == 201
    with node.database.unit_of_work() as session:
        row = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "permit")).one()
    assert row.destination_party == "XB"
    assert row.headers["X-EPIX-Conversation-Id"] == "conv-fwd-1"
    assert envelope_from_headers(row.headers).conversation_id == "conv-fwd-1"


async def test_same_id_same_bytes_returns_the_original_receipt_and_other_bytes_are_refused(
    client: httpx.AsyncClient, node: Node
) -> None:
    body = node.signed_permit(number="XA-IDEM-1")
    sent = headers(node.key("XA", MA), message_id="idem-1")
    first = await client.post("/v1/messages", content=body, headers=sent)
    again = await client.post("/v1/messages", content=body, headers=sent)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.content == first.content
    other = await client.post("/v1/messages", content=node.signed_permit(), headers=sent)
    assert other.status_code == 409 and codes(other) == ["EPIX-MSG-001"]
    rejected = verify_receipt(node, base64.b64decode(other.json()["receipt"]))
    assert receipt_field(rejected, "Status") == "rejected"
    assert stored(node)[0] == 1


async def test_a_different_permit_with_a_used_number_is_refused(
    client: httpx.AsyncClient, node: Node
) -> None:
    key = node.key("XA", MA)
    first = await client.post(
        "/v1/messages", content=node.signed_permit(number="XA-DUP"), headers=headers(key)
    )
    assert first.status_code == 201
    second = await client.post(
        "/v1/messages",
        content=node.signed_permit(number="XA-DUP", lines=1),
        headers=headers(key),
    )
    assert second.status_code == 409 and codes(second) == ["EPIX-MSG-007"]
    assert stored(node)[:2] == (1, 1)


async def test_no_receipt_when_the_commit_fails(
    client: httpx.AsyncClient, node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guarantee 1: a receipt only after bytes, hash and audit event are committed. A disk
    that fails is an outage of the database: 503 EPIX-DB-004 with Retry-After."""
    from epix.exchange import service

    real = service.store_submission

    def failing(*args: Any, **kwargs: Any) -> Message:
        real(*args, **kwargs)
        raise OperationalError("COMMIT", {}, sqlite3.OperationalError("disk I/O error"))

    monkeypatch.setattr(service, "store_submission", failing)
    response = await client.post(
        "/v1/messages", content=node.signed_permit(), headers=headers(node.key("XA", MA))
    )
    assert response.status_code == 503 and response.headers["retry-after"] == "60"
    assert codes(response) == ["EPIX-DB-004"] and "receipt" not in response.json()
    assert stored(node) == (0, 0, 0)
    with node.database.unit_of_work() as session:
        ok = session.scalars(select(AuditEvent).where(AuditEvent.action == "message.submit")).all()
        assert ok == []


def _attacks(node: Node) -> dict[str, bytes]:
    xa_key, xa_cert = node.demo.signing_identity("XA")
    unsigned = write_permit(demo_permit(number="XA-ATTACK"))
    signed = sign_document(unsigned, xa_key, xa_cert)
    stranger = make_identity("Unregistered MA", party="XA")
    xb_key, xb_cert = node.demo.signing_identity("XB")
    rsa = make_identity("XA MA RSA", party="XA")
    # Wrapping: the signed permit moved under a new root that carries other business data.
    wrapped_root = etree.Element("{urn:example:wrap}Wrapper")
    wrapped_root.append(etree.fromstring(signed))
    wrapped_root.append(etree.fromstring(unsigned.replace(b"XA-ATTACK", b"XA-FORGED")))
    tampered = signed.replace(b"XA-ATTACK", b"XA-ATTACX")
    return {
        "unsigned": unsigned,
        "unknown signer": sign_document(unsigned, stranger.key_pem, stranger.cert_pem),
        "signer of another Party": sign_document(unsigned, xb_key, xb_cert),
        "wrapped": etree.tostring(wrapped_root),
        "tampered": tampered,
        "DTD": b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]>'
        + signed.split(b"?>", 1)[1],
        "SHA-1": forge(unsigned, load_key(rsa.key_pem), rsa.certificate, method=RSA_SHA1),
    }


@pytest.mark.parametrize(
    "attack",
    [
        "unsigned",
        "unknown signer",
        "signer of another Party",
        "wrapped",
        "tampered",
        "DTD",
        "SHA-1",
    ],
)
async def test_forged_or_unsigned_permits_are_refused_before_storage(
    client: httpx.AsyncClient, node: Node, attack: str
) -> None:
    """Guarantee 6: fail-closed, nothing stored, a code and a signed rejected receipt."""
    body = _attacks(node)[attack]
    response = await client.post("/v1/messages", content=body, headers=headers(node.key("XA", MA)))
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/problem+json"
    found = codes(response)
    assert found and all(c.split("-")[1] in ("SIG", "XML", "MSG", "SCHEMA") for c in found)
    if attack != "DTD":
        assert response.json()["receipt_status"] == "rejected"
    assert stored(node) == (0, 0, 0)


async def test_oversized_body_gets_413_and_deep_nesting_is_refused(
    client: httpx.AsyncClient, node: Node
) -> None:
    """Guarantee 7."""
    big = b"<a>" + b"x" * (node.settings.max_body_bytes + 10) + b"</a>"
    response = await client.post("/v1/messages", content=big, headers=headers(node.key("XA", MA)))
    assert response.status_code == 413 and codes(response) == ["EPIX-REQ-003"]
    deep = b"<a>" * 100 + b"</a>" * 100
    response = await client.post("/v1/messages", content=deep, headers=headers(node.key("XA", MA)))
    assert response.status_code == 400 and codes(response) == ["EPIX-XML-003"]
    assert stored(node) == (0, 0, 0)


async def test_bad_requests_are_problems_with_codes(client: httpx.AsyncClient, node: Node) -> None:
    key = node.key("XA", MA)
    body = node.signed_permit()
    cases: list[tuple[dict[str, str], bytes, int, str]] = [
        (headers(key, content_type="application/json"), b"{}", 415, "EPIX-REQ-002"),
        (headers(key, recipient="QQ"), body, 422, "EPIX-MSG-003"),
        (headers(key, sender="XB"), body, 403, "EPIX-AUTH-005"),
        (headers(node.key("XB", "customs")), body, 403, "EPIX-AUTH-004"),
        (headers("epix_0000_not-a-key"), body, 401, "EPIX-AUTH-002"),
        (headers(key, message_id="bad id with spaces"), body, 422, "EPIX-REQ-004"),
        (
            headers(key),
            b"<CITESEPermit xmlns='urn:un:unece:uncefact:data:standard:"
            b"CITESEPermit:2'><Nonsense/></CITESEPermit>",
            422,
            "EPIX-SCHEMA-001",
        ),
        (headers(key), b"<not-xml", 400, "EPIX-XML-001"),
    ]
    for sent, content, status, code in cases:
        response = await client.post("/v1/messages", content=content, headers=sent)
        assert response.status_code == status, (code, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert code in codes(response)
    assert stored(node) == (0, 0, 0)


async def test_expired_api_key_is_refused(client: httpx.AsyncClient, node: Node) -> None:
    with node.database.unit_of_work() as session:
        user = auth.get_user(session, "xa-management_authority")
        _, raw = auth.issue_api_key(
            session, user, expires_at=datetime.now(UTC) + timedelta(milliseconds=50)
        )
    await asyncio.sleep(0.1)
    response = await client.post("/v1/messages", content=node.signed_permit(), headers=headers(raw))
    assert response.status_code == 401 and codes(response) == ["EPIX-AUTH-003"]


async def test_every_submission_is_in_an_intact_audit_chain(
    client: httpx.AsyncClient, node: Node
) -> None:
    """Guarantee 8 as far as the exchange goes: accepted and refused submissions are audited."""
    key = node.key("XA", MA)
    await client.post("/v1/messages", content=node.signed_permit(), headers=headers(key))
    await client.post("/v1/messages", content=b"<x/>", headers=headers(key))
    with node.database.unit_of_work() as session:
        outcomes = session.scalars(
            select(AuditEvent.outcome).where(AuditEvent.action == "message.submit")
        ).all()
        assert outcomes == ["ok", "EPIX-XML-005"]
        assert verify_chain(session).ok
        event = session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "message.submit", AuditEvent.outcome == "ok"
            )
        ).one()
        assert "authorization" not in event.headers.lower()


async def test_permitted_quantities_the_ledger_cannot_hold_exactly_are_refused(
    client: httpx.AsyncClient, node: Node
) -> None:
    """The ledger keeps six decimals (and SQLite keeps a double): a signed 1.0000005 KGM was
    stored as 1.000001, so customs could endorse more than the permit allows, and a quantity
    beyond the column failed the store on PostgreSQL with "retry" (503) for ever."""
    key_pem, cert_pem = node.demo.signing_identity("XA")
    before = stored(node)
    for number, quantity in (
        ("XA-QTY-FINE", "1.0000005"),
        ("XA-QTY-BIG", "1000000000000000"),
        ("XA-QTY-WIDE", "12345678901.000001"),
    ):
        permit = demo_permit(number=number, lines=1)
        line = dataclasses.replace(permit.lines[0], quantity=Decimal(quantity))
        body = sign_document(
            write_permit(dataclasses.replace(permit, lines=(line,))), key_pem, cert_pem
        )
        response = await client.post(
            "/v1/messages", content=body, headers=headers(node.key("XA", MA))
        )
        assert response.status_code == 422, (quantity, response.text)
        assert codes(response) == ["EPIX-QTY-012"], quantity
    assert stored(node) == before
    exact = demo_permit(number="XA-QTY-EXACT", lines=1)
    line = dataclasses.replace(exact.lines[0], quantity=Decimal("123456789.000001"))
    body = sign_document(write_permit(dataclasses.replace(exact, lines=(line,))), key_pem, cert_pem)
    response = await client.post("/v1/messages", content=body, headers=headers(node.key("XA", MA)))
    assert response.status_code == 201, response.text
    with node.database.unit_of_work() as session:
        permit_row = session.scalar(select(Permit).where(Permit.number == "XA-QTY-EXACT"))
        assert permit_row is not None
        assert [row.permitted_quantity for row in permit_row.lines] == [Decimal("123456789.000001")]


async def test_a_party_node_refuses_a_permit_between_two_other_parties(
    tmp_path: Path, database: Database
) -> None:
    """A Party node carries its own Party's traffic: permits its MA sends and those peers send
    to it. A permit of XB for XC submitted to XA's node was accepted with a signed receipt and
    queued for XC's node, which then refuses XA's node sending as XB (EPIX-AUTH-005): accepted
    here, never deliverable. (A hub, holding every Party's inbox, takes it: see the tests above.)"""
    node = make_node(tmp_path, database, node_mode=NodeMode.PARTY, node_party="XA")
    with node.database.unit_of_work() as session:
        secretariat = auth.principal_of(auth.get_user(session, "cites-secretariat"))
        registry_service.add_party(session, code="XC", name="Party XC", actor=secretariat)
    body = sign_document(
        write_permit(demo_permit(number="XB-THIRD", exporter_country="XB", importer_country="XC")),
        *node.demo.signing_identity("XB"),
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=node.app), base_url="http://testserver"
    ) as client:
        refused = await client.post(
            "/v1/messages",
            content=body,
            headers=headers(node.key("XB", MA), sender="XB", recipient="XC"),
        )
    assert refused.status_code == 422 and codes(refused) == ["EPIX-MSG-010"], refused.text
    assert "XC's node" in refused.json()["detail"]
    assert stored(node)[0] == 0
    with node.database.unit_of_work() as session:
        assert session.scalars(select(OutboxMessage.destination_party)).all() == []


@pytest.mark.xmlsec1
async def test_every_rejection_receipt_verifies_in_xmlsec1_and_repeats_the_problems_codes(
    client: httpx.AsyncClient, node: Node, tmp_path: Path
) -> None:
    """A sender proves what the node said with the rejected receipt alone: it must verify in
    the independent implementation against the node certificate, and carry the same codes,
    in the same order, as the problem+json it came with."""
    xmlsec1 = need_command("xmlsec1")
    certificate = tmp_path / "node.pem"
    certificate.write_bytes(
        node_identity(node.settings.data_dir, node.settings.node_party).cert_pem
    )
    signed = node.signed_permit(number="XA-RECEIPTS-1")
    rejections = {
        "not-xml": b"<not-xml",
        "empty": b" \n",
        "doctype": b"<!DOCTYPE x [<!ENTITY e 'x'>]><x>&e;</x>",
        "utf16-garbage": "<a>\u00e9</b>".encode("utf-16"),
        "unsigned": write_permit(demo_permit(number="XA-RECEIPTS-2")),
        "tampered": signed.replace(b"XA-RECEIPTS-1", b"XA-RECEIPTS-3"),
        "two-findings": b"<CITESEPermit xmlns='urn:un:unece:uncefact:data:standard:"
        b"CITESEPermit:2'><Nonsense/><More/></CITESEPermit>",
    }
    for name, body in rejections.items():
        response = await client.post(
            "/v1/messages", content=body, headers=headers(node.key("XA", MA), message_id=name)
        )
        assert 400 <= response.status_code < 500, (name, response.text)
        receipt = base64.b64decode(response.json()["receipt"])
        (tmp_path / "receipt.xml").write_bytes(receipt)
        verified = subprocess.run(
            [
                *(xmlsec1, "--verify", "--enabled-reference-uris", "empty"),
                *("--pubkey-cert-pem", str(certificate), str(tmp_path / "receipt.xml")),
            ],
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert verified.returncode == 0, (name, verified.stderr)
        findings = etree.fromstring(receipt).iter("{urn:epix:receipt:1}Finding")
        assert [f.get("code") for f in findings] == codes(response), name
        assert receipt_field(etree.fromstring(receipt), "Status") == "rejected"
    assert stored(node) == (0, 0, 0)


async def test_a_resubmission_answered_with_the_original_receipt_is_audited(
    client: httpx.AsyncClient, node: Node
) -> None:
    """Every transmission and receipt is one audit event. A retry of an accepted message
    (its answer lost) got the original receipt with nothing in the trail: the node received
    it and sent a receipt again, and no event said so. It is a ``message.replay`` now, not a
    second submission."""
    body = node.signed_permit(number="XA-REPLAY-1")
    sent = headers(node.key("XA", MA), message_id="replay-1")
    first = await client.post("/v1/messages", content=body, headers=sent)
    again = await client.post("/v1/messages", content=body, headers=sent)
    assert (first.status_code, again.status_code) == (201, 200)
    with node.database.read() as session:
        events = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.message_id == "replay-1")
            .order_by(AuditEvent.sequence)
        ).all()
    assert [(e.action, e.outcome) for e in events] == [
        ("message.submit", "ok"),
        ("message.replay", "ok"),
    ]
    replayed = events[1]
    assert replayed.actor_party == "XA" and replayed.permit_number == "XA-REPLAY-1"
    assert replayed.payload_sha256 == hashlib.sha256(body).hexdigest()
    assert replayed.purge_after == events[0].purge_after  # kept as long as the permit's own


async def test_a_resubmission_gets_its_receipt_though_the_checks_changed_since(
    client: httpx.AsyncClient, node: Node
) -> None:
    """A retry of an accepted message (its answer lost) was judged again before the node
    looked for it: a check tightened in between (here the nesting limit, as an operator's
    restart would; updated code lists alike) refused what the node had accepted and holds.
    The copy gets the first receipt; a new message is judged by the new checks."""
    body = node.signed_permit(number="XA-REPLAY-2")
    sent = headers(node.key("XA", MA), message_id="replay-2")
    first = await client.post("/v1/messages", content=body, headers=sent)
    assert first.status_code == 201
    node.app.state.settings = node.settings.model_copy(update={"max_xml_depth": 3})
    again = await client.post("/v1/messages", content=body, headers=sent)
    assert again.status_code == 200 and again.content == first.content
    other = await client.post(
        "/v1/messages", content=body, headers=headers(node.key("XA", MA), message_id="replay-3")
    )
    assert other.status_code == 400 and other.json()["code"] == "EPIX-XML-003"
