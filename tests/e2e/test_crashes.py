"""Exactly once across real crashes: two ``epix serve`` nodes on loopback, each behind a test
proxy (``tests/e2e/crash_harness.py``) that holds or cuts one peer message at the worst moment,
while the test kills a node with SIGKILL and starts it again on the same data.

After every crash each permit and endorsement is stored once at its destination, the sender's
outbox row holds the receipt the receiver stored, both audit trails tell the same story, and a
permit's cancellation never overtakes the permit itself.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from epix.audit.models import AuditEvent
from epix.auth.principal import Role
from epix.cli.two_nodes import Node, issue_user_key, node_environment, prepare
from epix.db import Database
from epix.delivery.models import OutboxMessage
from epix.exchange.models import InboxEntry, Message, Receipt
from epix.permits.samples import demo_permit
from epix.permits.writer import write_permit
from epix.registry.roles import MANAGEMENT_AUTHORITY
from epix.signatures.keys import ensure_identity
from epix.signatures.sign import sign_document
from tests.conftest import REPO_ROOT
from tests.e2e.crash_harness import Cluster, Rule, ServedNode, cluster, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shared() -> Iterator[Cluster]:
    """One pair of nodes for the module (preparing and starting them takes most of the time);
    every test uses its own messages and leaves both nodes running."""
    with tempfile.TemporaryDirectory() as base, cluster(prepare(Path(base))) as started:
        yield started


@pytest.fixture
def running(shared: Cluster) -> Iterator[Cluster]:
    for proxy in (shared.proxy_a, shared.proxy_b):
        proxy.reset()
    yield shared
    for proxy in (shared.proxy_a, shared.proxy_b):
        proxy.reset()


def _submit(
    url: str, api_key: str, signer: tuple[bytes, bytes], sender: str, recipient: str
) -> tuple[str, str]:
    """A Management Authority submits a new permit at the node at ``url``: (number, id)."""
    number = f"{sender}-CR-{uuid.uuid4().hex[:10]}"
    message_id = f"crash-{uuid.uuid4().hex}"
    permit = demo_permit(
        number=number, exporter_country=sender, importer_country=recipient, lines=1
    )
    answer = httpx.post(
        f"{url}/v1/messages",
        content=sign_document(write_permit(permit), *signer),
        headers={
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/xml",
            "X-EPIX-Message-Id": message_id,
            "X-EPIX-From": sender,
            "X-EPIX-To": recipient,
        },
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    return number, message_id


def _submit_permit(c: Cluster) -> tuple[str, str]:
    """XA's Management Authority submits a new permit for XB at node A."""
    return _submit(c.a.url, c.nodes.ma_key, c.nodes.signer, "XA", "XB")


def _outbox_rows(node: Node) -> list[OutboxMessage]:
    database = Database(node.database_url)
    try:
        with database.read() as session:
            return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
    finally:
        database.dispose()


def _delivered(node: Node, *message_ids: str) -> bool:
    rows = {row.message_id: row.state for row in _outbox_rows(node)}
    return all(rows.get(message_id) == "delivered" for message_id in message_ids)


def _stored_at(node: Node, message_id: str) -> tuple[int, int, list[bytes]]:
    """(stored messages, inbox entries, receipts) for ``message_id`` at ``node``."""
    database = Database(node.database_url)
    try:
        with database.read() as session:
            messages = session.scalar(
                select(func.count()).select_from(Message).where(Message.message_id == message_id)
            )
            entries = session.scalar(
                select(func.count())
                .select_from(InboxEntry)
                .join(Message, InboxEntry.message_pk == Message.id)
                .where(Message.message_id == message_id)
            )
            receipts = session.scalars(
                select(Receipt.body)
                .join(Message, Receipt.message_pk == Message.id)
                .where(Message.message_id == message_id)
            ).all()
            return int(messages or 0), int(entries or 0), list(receipts)
    finally:
        database.dispose()


def _actions(node: Node, message_id: str) -> list[str]:
    database = Database(node.database_url)
    try:
        with database.read() as session:
            return list(
                session.scalars(
                    select(AuditEvent.action)
                    .where(AuditEvent.message_id == message_id)
                    .order_by(AuditEvent.sequence)
                )
            )
    finally:
        database.dispose()


def _assert_once(c: Cluster, message_id: str, *, reverse: bool = False) -> None:
    """Stored once at B, in XB's inbox once, and A's row holds the receipt B stored; A
    transmitted it once, B took it in once (replays of it are not new submissions). With
    ``reverse``, the same from B to A."""
    sender, receiver = (c.nodes.b, c.nodes.a) if reverse else (c.nodes.a, c.nodes.b)
    messages, entries, receipts = _stored_at(receiver, message_id)
    assert (messages, entries) == (1, 1)
    (row,) = [r for r in _outbox_rows(sender) if r.message_id == message_id]
    assert row.state == "delivered" and row.receipt == receipts[0]
    assert _actions(sender, message_id).count("message.transmitted") == 1
    assert _actions(receiver, message_id).count("message.submit") == 1


def test_sender_killed_before_its_message_left_and_after_the_peer_stored_it(
    running: Cluster,
) -> None:
    c = running
    # 1. The outbox row is committed and the request is on its way, but never reaches B.
    lost = c.proxy_b.add(Rule("drop", "permit"))
    _, never_sent = _submit_permit(c)
    assert lost.reached.wait(20)
    c.a.kill()
    c.a.start()
    wait_until(
        "the permit to reach B after A's restart", lambda: _delivered(c.nodes.a, never_sent), 30
    )
    _assert_once(c, never_sent)

    # 2. B stored the permit and answered; A dies before it hears the answer.
    held = c.proxy_b.add(Rule("hold_answer", "permit"))
    _, answered = _submit_permit(c)
    assert held.reached.wait(20)
    assert _stored_at(c.nodes.b, answered)[0] == 1
    c.a.kill()
    held.release.set()
    c.a.start()
    wait_until(
        "A to record B's receipt after its restart", lambda: _delivered(c.nodes.a, answered), 30
    )
    _assert_once(c, answered)
    assert len(c.proxy_b.messages("permit")) == 4  # each sent twice, stored once


def test_receiver_killed_with_the_body_half_read(running: Cluster) -> None:
    c = running
    cut = c.proxy_b.add(Rule("half_body", "permit"))
    _, message_id = _submit_permit(c)
    assert cut.reached.wait(20)
    c.b.kill()
    cut.release.set()
    assert _stored_at(c.nodes.b, message_id)[0] == 0
    c.b.start()
    wait_until(
        "the permit to reach B after B's restart", lambda: _delivered(c.nodes.a, message_id), 30
    )
    _assert_once(c, message_id)


def test_a_cancellation_never_overtakes_the_permit_it_cancels(running: Cluster) -> None:
    """The permit's attempts fail (B unreachable for it) while XA cancels it: the
    cancellation must not reach B first, or B would take the permit in afterwards as
    ``issued``."""
    c = running
    held = c.proxy_b.add(Rule("drop", "permit", times=0))
    number, message_id = _submit_permit(c)
    assert held.reached.wait(20)
    cancel = httpx.post(
        f"{c.a.url}/v1/permits/XA/{number}/cancel",
        json={"reason": "issued in error"},
        headers={"Authorization": f"Bearer {c.nodes.ma_key}"},
        timeout=30,
    )
    assert cancel.status_code == 200, cancel.text
    with contextlib.suppress(AssertionError):  # held back behind the permit: as it should be
        wait_until("the cancellation to be sent", lambda: bool(c.proxy_b.messages("status")), 2)
    held.retired = True
    wait_until(
        "both to be delivered",
        lambda: all(row.state == "delivered" for row in _outbox_rows(c.nodes.a)),
        30,
    )
    view = httpx.get(
        f"{c.b.url}/v1/permits/XA/{number}",
        headers={"Authorization": f"Bearer {c.nodes.customs_key}"},
        timeout=30,
    )
    assert view.status_code == 200, view.text
    assert view.json()["status"] == "cancelled"
    kinds = [seen.document_type for seen in c.proxy_b.messages()]
    assert kinds.index("permit") < kinds.index("status")
    _assert_once(c, message_id)


def test_an_answer_200_that_is_no_receipt_does_not_count_as_delivered(running: Cluster) -> None:
    """Design: a receipt is sent only after the receiver committed, so only a receipt signed
    by the peer's registered node key for this message proves delivery; anything else is
    retried (EPIX-DLV-002) and the real receipt is the one kept."""
    c = running
    fake = c.proxy_b.add(Rule("answer", "permit", body=b"<html>OK</html>", times=2))
    _, message_id = _submit_permit(c)
    wait_until("two answers that are no receipt", lambda: fake.used == 2, 20)
    (row,) = [r for r in _outbox_rows(c.nodes.a) if r.message_id == message_id]
    assert row.state in ("pending", "delivered")
    wait_until("the delivery", lambda: _delivered(c.nodes.a, message_id), 30)
    (row,) = [r for r in _outbox_rows(c.nodes.a) if r.message_id == message_id]
    assert row.attempts == 3
    _assert_once(c, message_id)


def _metric(node: ServedNode, name: str) -> float:
    text = httpx.get(f"{node.url}/metrics", timeout=10).text
    (line,) = [line for line in text.splitlines() if line.startswith(name + " ")]
    return float(line.split()[-1])


def _epix(node: ServedNode, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "epix.cli", *args],
        cwd=REPO_ROOT,
        env=node_environment(node.node) | node.extra_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_peer_failing_forever_is_given_up_visibly_and_resent(running: Cluster) -> None:
    c = running
    c.a.stop()
    normal = dict(c.a.extra_env)
    c.a.extra_env = normal | {"EPIX_OUTBOX_GIVE_UP_SECONDS": "3"}
    c.a.start()
    try:
        given_up = _metric(c.a, 'epix_outbox_outcomes_total{outcome="given_up"}')
        delivered = _metric(c.a, 'epix_outbox_outcomes_total{outcome="delivered"}')
        down = c.proxy_b.add(Rule("answer", "permit", status=503, body=b"down", times=0))
        _, message_id = _submit_permit(c)
        wait_until(
            "the row to be given up",
            lambda: any(
                r.message_id == message_id and r.state == "failed" for r in _outbox_rows(c.nodes.a)
            ),
            30,
        )
        assert down.used >= 2
        listed = _epix(c.a, "outbox", "list", "--state", "failed", "--json")
        assert listed.returncode == 0, listed.stderr
        (failed,) = [
            item
            for item in map(json.loads, listed.stdout.splitlines())
            if item["message_id"] == message_id
        ]
        assert failed["error"].startswith("EPIX-DLV-001")
        assert _metric(c.a, 'epix_outbox_messages{state="failed"}') >= 1
        assert _metric(c.a, 'epix_outbox_outcomes_total{outcome="given_up"}') == given_up + 1
        assert "message.delivery_failed" in _actions(c.nodes.a, message_id)

        down.retired = True
        resent = _epix(c.a, "outbox", "resend", str(failed["id"]))
        assert resent.returncode == 0, resent.stderr
        wait_until("the resent row to arrive", lambda: _delivered(c.nodes.a, message_id), 30)
        assert _metric(c.a, 'epix_outbox_outcomes_total{outcome="delivered"}') == delivered + 1
        assert "outbox.resent" in _actions(c.nodes.a, message_id)
        _assert_once(c, message_id)
    finally:
        c.a.stop()
        c.a.extra_env = normal
        c.a.start()


def test_both_nodes_killed_with_messages_in_flight_both_ways(running: Cluster) -> None:
    c = running
    keys = c.nodes.a.data_dir.parent / "keys"
    xb_signer = ensure_identity(  # made by ``prepare``, registered as XB's MA
        keys,
        f"XB-{MANAGEMENT_AUTHORITY}",
        party="XB",
        role=MANAGEMENT_AUTHORITY,
        common_name=f"XB {MANAGEMENT_AUTHORITY}",
    )
    database_b = Database(c.nodes.b.database_url)
    try:
        xb_ma = issue_user_key(
            database_b,
            f"xb-ma-{uuid.uuid4().hex[:6]}",
            "XB",
            "XB Management Authority",
            Role.MANAGEMENT_AUTHORITY,
        )
    finally:
        database_b.dispose()
    stalls = [proxy.add(Rule("drop", "permit", times=0)) for proxy in (c.proxy_a, c.proxy_b)]
    to_b = [_submit_permit(c)[1] for _ in range(3)]
    to_a = [_submit(c.b.url, xb_ma, xb_signer, "XB", "XA")[1] for _ in range(3)]
    wait_until("both to be trying", lambda: all(stall.used >= 3 for stall in stalls), 20)
    c.a.kill()
    c.b.kill()
    for stall in stalls:
        stall.retired = True
    c.a.start()
    c.b.start()
    wait_until(
        "every message to arrive",
        lambda: _delivered(c.nodes.a, *to_b) and _delivered(c.nodes.b, *to_a),
        40,
    )
    for message_id in to_b:
        _assert_once(c, message_id)
    for message_id in to_a:
        _assert_once(c, message_id, reverse=True)


def _worker(node: ServedNode, log: Path) -> subprocess.Popen[bytes]:
    """``epix worker`` on node A's database, writing its log lines to ``log``."""
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "epix.cli", "worker"],
            cwd=REPO_ROOT,
            env=node_environment(node.node) | node.extra_env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def test_a_frozen_worker_process_loses_its_lease_and_its_late_answer_is_fenced_off(
    running: Cluster,
) -> None:
    """``epix worker`` stopped (SIGSTOP) while its request hangs: the lease runs out, a second
    worker process delivers the row, and the first one's outcome, when it wakes, is discarded."""
    c = running
    c.a.stop()
    normal = dict(c.a.extra_env)
    c.a.extra_env = normal | {"EPIX_RUN_WORKER_IN_PROCESS": "false"}
    c.a.start()
    log = c.nodes.a.data_dir / "workers.log"
    workers: list[subprocess.Popen[bytes]] = []
    try:
        held = c.proxy_b.add(Rule("hold_request", "permit"))
        workers.append(_worker(c.a, log))
        _, message_id = _submit_permit(c)
        assert held.reached.wait(60)
        workers[0].send_signal(signal.SIGSTOP)
        workers.append(_worker(c.a, log))  # claims the row once the first one's lease ran out
        wait_until("the second worker to deliver", lambda: _delivered(c.nodes.a, message_id), 60)
        held.release.set()  # the first request reaches B now: a copy, answered from its record
        workers[0].send_signal(signal.SIGCONT)
        wait_until(
            "the first worker to find its lease gone",
            lambda: "no longer leased to this worker" in log.read_text(errors="replace"),
            30,
        )
        _assert_once(c, message_id)
        (row,) = [r for r in _outbox_rows(c.nodes.a) if r.message_id == message_id]
        assert row.attempts == 2
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGCONT)
            worker.terminate()
            worker.wait(30)
        c.a.stop()
        c.a.extra_env = normal
        c.a.start()
