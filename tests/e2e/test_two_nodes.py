"""Two real Party nodes (``epix serve`` on loopback, separate databases, registry shared by
publication): XA's permit goes to XB's node, XB's endorsement comes back to XA's inbox once."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from epix.auth.principal import Role
from epix.cli.two_nodes import (
    Node,
    TrailEvent,
    TwoNodes,
    audit_trail,
    issue_user_key,
    node_environment,
    prepare,
    run_scenario,
    running,
    serving,
    wait_until,
)
from epix.db import Database
from epix.delivery.models import OutboxMessage
from epix.endorsements.models import Endorsement
from epix.exchange.models import InboxEntry, Message
from epix.exchange.node_identity import NODE_ROLE, node_identity
from epix.permits.samples import demo_permit
from epix.permits.writer import write_permit
from epix.registry.anchors import follower_report
from epix.registry.models import RegistryDocument
from epix.registry.trust import RegistryTrustStore
from epix.signatures.sign import sign_document
from epix.signatures.verify import verify_document
from tests.conftest import POSTGRES_URL, need


@pytest.fixture
def postgres_pair() -> Iterator[tuple[str, str]]:
    """Two fresh, empty PostgreSQL databases (the nodes migrate them)."""
    need(POSTGRES_URL is not None, "PostgreSQL (EPIX_TEST_POSTGRES_URL)")
    assert POSTGRES_URL is not None
    names = [f"epix_test_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            for name in names:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        urls = [
            make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
            for name in names
        ]
        yield urls[0], urls[1]
    finally:
        with admin.connect() as connection:
            for name in names:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _actions(trail: list[TrailEvent], message_id: str) -> list[str]:
    return [event.action for event in trail if event.message_id == message_id]


def _first(trail: list[TrailEvent], action: str, message_id: str) -> TrailEvent:
    return next(e for e in trail if e.action == action and e.message_id == message_id)


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_permit_goes_node_to_node_and_the_endorsement_comes_back_once(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    urls: tuple[str | None, str | None] = (
        request.getfixturevalue("postgres_pair") if backend == "postgres" else (None, None)
    )
    nodes = prepare(tmp_path, database_urls=urls)
    steps: list[str] = []
    with running(nodes):
        outcome = run_scenario(nodes, steps.append)
        # The peer's retry of a delivered endorsement (its answer lost, say) gets the original
        # receipt and has no second effect.
        db_b = Database(nodes.b.database_url)
        with db_b.unit_of_work() as session:
            row_b = session.scalars(
                select(OutboxMessage).where(OutboxMessage.message_id == outcome.endorsement_id)
            ).one()
            endorsed_at_b = session.scalars(select(Endorsement)).one()
            followed = session.scalars(select(RegistryDocument)).all()
        db_b.dispose()
        db_a = Database(nodes.a.database_url)
        with db_a.read() as session:
            fetches_at_a = follower_report(session).followers
        db_a.dispose()
        peer_key_at_a = json.loads(nodes.b.env["EPIX_PEER_API_KEYS"])["XA"]
        retry = httpx.post(
            f"{nodes.a.url}/v1/messages",
            content=row_b.payload,
            headers={str(k): str(v) for k, v in row_b.headers.items()}
            | {
                "Content-Type": row_b.content_type,
                "Authorization": f"Bearer {peer_key_at_a}",
            },
            timeout=30,
        )

    assert retry.status_code == 200 and retry.content == row_b.receipt
    assert any("signature valid: True" in step for step in steps)

    # Node B followed the registry node A published, pinned to the Secretariat certificate,
    # and identified itself doing so: A, the Secretariat's node, lists it as a follower.
    assert followed and all(doc.source_url == f"{nodes.a.url}/v1/registry" for doc in followed)
    assert [(f.party, f.version) for f in fetches_at_a] == [("XB", followed[-1].version)]

    # The endorsement B's customs made is byte-exact in XA's inbox at A, exactly once.
    assert outcome.endorsement == endorsed_at_b.document
    db_a = Database(nodes.a.database_url)
    with db_a.unit_of_work() as session:
        entries = session.scalar(
            select(func.count())
            .select_from(InboxEntry)
            .join(Message, InboxEntry.message_pk == Message.id)
            .where(Message.message_id == outcome.endorsement_id, InboxEntry.recipient_party == "XA")
        )
        # XB's signature verifies against A's registry (role node of XB).
        verdict = verify_document(
            outcome.endorsement, party="XB", role=NODE_ROLE, trust=RegistryTrustStore(session)
        )
        row_a = session.scalars(
            select(OutboxMessage).where(OutboxMessage.message_id == outcome.message_id)
        ).one()
    db_a.dispose()
    assert entries == 1
    assert verdict.valid and verdict.certificate is not None
    xb_node = node_identity(nodes.b.data_dir, "XB").trusted().fingerprint
    assert verdict.certificate.fingerprint == outcome.signer_fingerprint == xb_node

    # Both forwards completed with the peer's signed receipt stored.
    assert row_a.state == "delivered" and row_a.receipt and b"<Status>accepted" in row_a.receipt
    assert row_b.state == "delivered" and row_b.receipt

    # The issuer's copy of its permit shows the import inspection: used, with the history.
    assert outcome.issuer_view["status"] == "used"
    assert "endorsement.receive" in [e["action"] for e in outcome.issuer_view["history"]]
    assert all(line["remaining"] == "0" for line in outcome.issuer_view["lines"])

    _assert_trails(nodes.a, nodes.b, outcome.message_id, outcome.endorsement_id, outcome.number)


def _assert_trails(a: Node, b: Node, message_id: str, endorsement_id: str, number: str) -> None:
    ids = {message_id, endorsement_id}
    trail_a = audit_trail(a, message_ids=ids, number=number)
    trail_b = audit_trail(b, message_ids=ids, number=number)
    # Tracking the message at A (waiting for its delivery) is audited as a lookup each time.
    tracked = _actions(trail_a, message_id)
    assert "permit.lookup" in tracked
    assert [action for action in tracked if action != "permit.lookup"][:2] == [
        "message.submit",
        "message.transmitted",
    ]
    assert _actions(trail_b, message_id)[0] == "message.submit"
    assert _actions(trail_b, endorsement_id)[:2] == ["endorsement.record", "message.transmitted"]
    assert "endorsement.receive" in _actions(trail_a, endorsement_id)

    submitted = _first(trail_a, "message.submit", message_id)
    received_b = _first(trail_b, "message.submit", message_id)
    sent_a = _first(trail_a, "message.transmitted", message_id)
    endorsed = _first(trail_b, "endorsement.record", endorsement_id)
    sent_b = _first(trail_b, "message.transmitted", endorsement_id)
    received_a = _first(trail_a, "endorsement.receive", endorsement_id)
    # Who acted on each side, and the clocks of one machine agreeing with the order of events.
    assert (submitted.actor, received_b.actor, endorsed.actor) == ("xa-ma", "node-xa", "xb-customs")
    assert received_a.actor == "node-xb" and received_a.detail["effect"]["ledger"] == "recorded"
    assert sent_a.detail["route"] == sent_b.detail["route"] == "peer"
    assert submitted.at <= received_b.at <= sent_a.at <= endorsed.at
    assert endorsed.at <= received_a.at <= sent_b.at


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_the_importers_node_holds_the_import_inspection_to_what_was_exported(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """XA's customs endorse the export of part of a line at node A; node B, with its own copy
    of the ledger, let XB's customs record the whole permitted quantity on import, because
    the export endorsement went only to XA's own inbox (node A's ledger then refused the
    inspection, and the two nodes disagreed for good)."""
    urls: tuple[str | None, str | None] = (
        request.getfixturevalue("postgres_pair") if backend == "postgres" else (None, None)
    )
    nodes = prepare(tmp_path, database_urls=urls)
    db_a = Database(nodes.a.database_url)
    xa_customs = issue_user_key(db_a, "xa-customs", "XA", "XA Customs", Role.CUSTOMS)
    db_a.dispose()
    number = f"XA-EXP-{uuid.uuid4().hex[:10]}"
    ma = {"Authorization": f"Bearer {nodes.ma_key}"}
    with (
        running(nodes),
        httpx.Client(base_url=nodes.a.url, timeout=30) as node_a,
        httpx.Client(base_url=nodes.b.url, timeout=30) as node_b,
    ):
        signed = sign_document(write_permit(demo_permit(number=number, lines=2)), *nodes.signer)
        submitted = node_a.post(
            "/v1/messages",
            content=signed,
            headers=ma
            | {
                "Content-Type": "application/xml",
                "X-EPIX-Message-Id": f"perm-{uuid.uuid4().hex}",
                "X-EPIX-From": "XA",
                "X-EPIX-To": "XB",
            },
        )
        assert submitted.status_code == 201, submitted.text
        line = node_a.get(f"/v1/permits/XA/{number}", headers=ma).json()["lines"][0]
        permitted = Decimal(line["permitted"])
        exported = permitted / 2
        common = {
            "port": "NLRTM",
            "date": datetime.now(UTC).date().isoformat(),
            "officer": "Officer",
            "transport_document": "AWB 1",
        }
        export = node_a.post(
            f"/v1/permits/XA/{number}/endorsements",
            headers={"Authorization": f"Bearer {xa_customs}"},
            json=common
            | {
                "side": "export",
                "lines": [
                    {"line_id": line["line_id"], "quantity": str(exported), "unit": line["unit"]}
                ],
            },
        )
        assert export.status_code == 201, export.text
        customs = {"Authorization": f"Bearer {nodes.customs_key}"}

        def endorsed_at_b() -> bool:
            view = node_b.get(f"/v1/permits/XA/{number}", headers=customs)
            return view.status_code == 200 and view.json()["status"] == "endorsed"

        wait_until("node B to learn of the export endorsement", endorsed_at_b, 60)

        def inspect(quantity: Decimal) -> httpx.Response:
            return node_b.post(
                f"/v1/permits/XA/{number}/endorsements",
                headers=customs,
                json=common
                | {
                    "side": "import",
                    "lines": [
                        {
                            "line_id": line["line_id"],
                            "quantity": str(quantity),
                            "unit": line["unit"],
                        }
                    ],
                },
            )

        too_much = inspect(permitted)
        assert too_much.status_code == 422, too_much.text
        assert [e["code"] for e in too_much.json()["errors"]] == ["EPIX-QTY-001"]
        assert inspect(exported).status_code == 201

        def used_at_a() -> bool:
            return node_a.get(f"/v1/permits/XA/{number}", headers=ma).json()["status"] == "used"

        wait_until("node A to record the import inspection", used_at_a, 60)


def _outbox_cli(node: Node, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "epix.cli", "outbox", *args],
        env=node_environment(node),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def _permit_never_reaches_b(nodes: TwoNodes) -> tuple[str, str]:
    """Node B is down and node A gives a delivery up after a second: XA's permit never reaches
    B. Returns the permit's number and a key of XA's customs at node A."""
    db_a = Database(nodes.a.database_url)
    xa_customs = issue_user_key(db_a, "xa-customs", "XA", "XA Customs", Role.CUSTOMS)
    db_a.dispose()
    number = f"XA-LOST-{uuid.uuid4().hex[:10]}"
    message_id = f"perm-{uuid.uuid4().hex}"
    ma = {"Authorization": f"Bearer {nodes.ma_key}"}
    quick_a = replace(nodes.a, env=nodes.a.env | {"EPIX_OUTBOX_GIVE_UP_SECONDS": "1"})
    with serving(quick_a), httpx.Client(base_url=nodes.a.url, timeout=30) as node_a:
        signed = sign_document(write_permit(demo_permit(number=number, lines=1)), *nodes.signer)
        submitted = node_a.post(
            "/v1/messages",
            content=signed,
            headers=ma
            | {
                "Content-Type": "application/xml",
                "X-EPIX-Message-Id": message_id,
                "X-EPIX-From": "XA",
                "X-EPIX-To": "XB",
            },
        )
        assert submitted.status_code == 201, submitted.text
        wait_until(
            "node A to give the permit's delivery up",
            lambda: (
                node_a.get(f"/v1/messages/{message_id}", headers=ma).json()["state"] == "failed"
            ),
            30,
        )
    return number, xa_customs


def _export_endorsement(node_a: httpx.Client, number: str, customs: str) -> str:
    """XA's customs endorse the export of the whole permit at node A; its endorsement id."""
    headers = {"Authorization": f"Bearer {customs}"}
    line = node_a.get(f"/v1/permits/XA/{number}", headers=headers).json()["lines"][0]
    export = node_a.post(
        f"/v1/permits/XA/{number}/endorsements",
        headers=headers,
        json={
            "side": "export",
            "port": "NLRTM",
            "date": datetime.now(UTC).date().isoformat(),
            "officer": "Officer",
            "transport_document": "AWB 1",
            "lines": [
                {"line_id": line["line_id"], "quantity": line["permitted"], "unit": line["unit"]}
            ],
        },
    )
    assert export.status_code == 201, export.text
    return str(export.json()["endorsement_id"])


def _forwarding_to_b(node_a: httpx.Client, number: str, customs: str) -> dict[str, object]:
    listed = node_a.get(
        f"/v1/permits/XA/{number}/endorsements", headers={"Authorization": f"Bearer {customs}"}
    )
    return next(f for f in listed.json()[0]["forwarding"] if f["to"] == "XB")


def _assert_permit_not_held_words(error: object, number: str) -> None:
    """What node B said, word for word: it does not hold the permit, and why."""
    assert isinstance(error, str) and error.startswith("HTTP 422 EPIX-MSG-011: "), error
    assert f"The node of XB does not hold permit XA {number}" in error
    assert "the permit never reached it" in error


def _waiting_for_permit_gauge(node_a: httpx.Client) -> float:
    scraped = node_a.get("/metrics").text
    line = next(
        line for line in scraped.splitlines() if line.startswith("epix_outbox_waiting_for_permit")
    )
    return float(line.split()[-1])


@pytest.mark.slow
def test_an_export_endorsement_sent_before_its_permit_reaches_the_importer_arrives_by_itself(
    tmp_path: Path,
) -> None:
    """The permit's delivery to XB's node was given up, so the export endorsement sent there
    later was refused with EPIX-MSG-011 (the node does not hold the permit). That refusal was
    final: the row failed, and node A's operator had to resend the permit and then the
    endorsement by hand. Now the endorsement waits for its permit (pending, EPIX-DLV-014, the
    refusal shown in its forwarding and counted in /metrics) and is retried; once the operator
    resends the permit, the endorsement follows by itself, and node B records it once."""
    nodes = prepare(tmp_path)
    number, customs = _permit_never_reaches_b(nodes)
    with (
        running(nodes),
        httpx.Client(base_url=nodes.a.url, timeout=30) as node_a,
        httpx.Client(base_url=nodes.b.url, timeout=30) as node_b,
    ):
        endorsement_id = _export_endorsement(node_a, number, customs)
        wait_until(
            "node B to refuse",
            lambda: _forwarding_to_b(node_a, number, customs)["error_code"] is not None,
            60,
        )
        waiting = _forwarding_to_b(node_a, number, customs)
        assert (waiting["state"], waiting["error_code"]) == ("pending", "EPIX-DLV-014"), waiting
        _assert_permit_not_held_words(waiting["error"], number)
        assert waiting["next_attempt_at"] is not None and waiting["give_up_at"] is not None
        assert _waiting_for_permit_gauge(node_a) == 1
        wait_until(
            "node A to try the endorsement again",
            lambda: int(str(_forwarding_to_b(node_a, number, customs)["attempts"])) >= 2,
            30,
        )

        # Node A's operator resends the permit's failed delivery, and only that.
        rows = [json.loads(row) for row in _outbox_cli(nodes.a, "list", "--json").splitlines()]
        assert [row["kind"] for row in rows if row["state"] == "failed"] == ["permit"]
        permit_row = next(row["id"] for row in rows if row["state"] == "failed")
        _outbox_cli(nodes.a, "resend", str(permit_row))
        wait_until(
            "the endorsement to reach node B",
            lambda: _forwarding_to_b(node_a, number, customs)["state"] == "delivered",
            60,
        )
        assert _waiting_for_permit_gauge(node_a) == 0
        at_b = node_b.get(
            f"/v1/permits/XA/{number}", headers={"Authorization": f"Bearer {nodes.customs_key}"}
        )
    assert at_b.status_code == 200 and at_b.json()["status"] == "endorsed"
    db_b = Database(nodes.b.database_url)
    with db_b.read() as session:
        recorded = session.scalar(
            select(func.count())
            .select_from(Endorsement)
            .where(Endorsement.endorsement_id == endorsement_id)
        )
        stored = session.scalar(
            select(func.count()).select_from(Message).where(Message.message_id == endorsement_id)
        )
    db_b.dispose()
    assert (recorded, stored) == (1, 1)


@pytest.mark.slow
def test_an_export_endorsement_whose_permit_never_reaches_the_importer_fails_after_the_wait(
    tmp_path: Path,
) -> None:
    """An endorsement the importer's node refuses for not holding its permit is retried for
    EPIX_OUTBOX_PERMIT_WAIT_SECONDS (here 4 s) from that refusal, then fails with the refusal's
    own words, which tell node A's operator what to do (before, it failed at once)."""
    nodes = prepare(tmp_path)
    number, customs = _permit_never_reaches_b(nodes)
    nodes = replace(
        nodes, a=replace(nodes.a, env=nodes.a.env | {"EPIX_OUTBOX_PERMIT_WAIT_SECONDS": "4"})
    )
    with running(nodes), httpx.Client(base_url=nodes.a.url, timeout=30) as node_a:
        _export_endorsement(node_a, number, customs)
        wait_until(
            "node B to refuse",
            lambda: _forwarding_to_b(node_a, number, customs)["error_code"] is not None,
            60,
        )
        refused_at = datetime.now(UTC)
        waiting = _forwarding_to_b(node_a, number, customs)
        assert (waiting["state"], waiting["error_code"]) == ("pending", "EPIX-DLV-014"), waiting
        wait_until(
            "node A to give the endorsement up",
            lambda: _forwarding_to_b(node_a, number, customs)["state"] == "failed",
            60,
        )
        failed = _forwarding_to_b(node_a, number, customs)
        waited = (datetime.now(UTC) - refused_at).total_seconds()
        assert _waiting_for_permit_gauge(node_a) == 0
    assert failed["error_code"] == "EPIX-DLV-006"
    _assert_permit_not_held_words(failed["error"], number)
    assert "`epix outbox resend ID`" in str(failed["error"])
    assert failed["next_attempt_at"] is None
    # The last retry falls at most one backoff (EPIX_OUTBOX_MAX_DELAY_SECONDS=2) before the end.
    assert int(str(failed["attempts"])) >= 2 and 1.5 <= waited <= 30, (failed, waited)
