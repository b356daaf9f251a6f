"""Delivery to real HTTP peers on 127.0.0.1: outages, lost answers, frozen workers, refusals.

The peer commits each message id once and answers every copy with its original node-signed
receipt; the sender verifies that receipt against its registry before a row counts as delivered.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from epix.audit.models import AuditEvent
from epix.db import Database
from epix.db.base import utcnow
from epix.delivery import outbox
from epix.delivery.models import OutboxMessage, OutboxState
from epix.delivery.worker import Result, Worker, default_worker
from epix.registry.models import RegistryParty
from epix.settings import Settings
from tests.delivery.helpers import (
    PEER_PARTY,
    Peer,
    PeerState,
    drain,
    enqueue_endorsements,
    peer_identity,
    register_peer,
    sender_settings,
    states,
)
from tests.pki import Identity


def _rows(database: Database) -> list[OutboxMessage]:
    with database.unit_of_work() as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def _after_one_pass(database: Database, settings: Settings) -> OutboxMessage:
    """The one outbox row after a single pass of a fresh worker."""
    worker = default_worker(database, settings)
    try:
        worker.run_once()
    finally:
        worker.close()
    (row,) = _rows(database)
    return row


def _audit_count(database: Database, action: str) -> int:
    with database.unit_of_work() as session:
        query = select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)
        return int(session.scalar(query) or 0)


@pytest.fixture
def identity() -> Identity:
    return peer_identity()


@pytest.fixture
def peer(sqlite_database: Database, identity: Identity) -> Iterator[Peer]:
    """XB's node (not started yet), published in XA's registry with its node key."""
    node = Peer(PeerState(identity=identity))
    register_peer(sqlite_database, endpoint=node.url, identity=identity)
    yield node
    node.stop()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return sender_settings(tmp_path)


def test_peer_down_for_a_while_then_back_gets_everything_once_with_bounded_retries(
    sqlite_database: Database, peer: Peer, settings: Settings
) -> None:
    ids = enqueue_endorsements(sqlite_database, 30)
    worker = default_worker(sqlite_database, settings)
    try:
        down_until = utcnow() + timedelta(seconds=1.0)
        while utcnow() < down_until:
            if worker.run_once() == 0:
                time.sleep(0.01)
        attempts_while_down = sum(row.attempts for row in _rows(sqlite_database))
        # Without the circuit breaker 30 rows retried every 0-0.2 s make hundreds of attempts;
        # with it: the first concurrent wave, then one probe per cool-down.
        bound = settings.outbox_concurrency + int(1.0 / 0.25) + 2
        assert 0 < attempts_while_down <= bound
        assert states(sqlite_database) == {"pending": 30}

        peer.start()
        drain(worker.run_once, sqlite_database)
    finally:
        worker.close()
    rows = _rows(sqlite_database)
    assert {row.state for row in rows} == {OutboxState.DELIVERED}
    assert peer.state.effects == 30
    assert sorted(peer.state.requests) == ids
    assert set(peer.state.requests.values()) == {1}
    assert all(row.receipt == peer.state.receipts[row.message_id] for row in rows)
    assert _audit_count(sqlite_database, "message.transmitted") == 30


def test_a_lost_answer_is_retried_and_completed_by_the_original_receipt(
    sqlite_database: Database, peer: Peer, settings: Settings
) -> None:
    peer.state.lose_first_answer = True
    peer.start()
    ids = enqueue_endorsements(sqlite_database, 5)
    worker = default_worker(sqlite_database, settings)
    try:
        drain(worker.run_once, sqlite_database)
    finally:
        worker.close()
    assert peer.state.effects == 5  # committed once each
    assert [peer.state.requests[i] for i in ids] == [2] * 5  # the answer was lost once each
    for row in _rows(sqlite_database):
        assert row.state == OutboxState.DELIVERED
        assert row.attempts == 2
        assert row.receipt == peer.state.receipts[row.message_id]
    assert _audit_count(sqlite_database, "message.transmitted") == 5


def test_a_receipt_from_an_unregistered_key_does_not_complete_the_delivery(
    sqlite_database: Database, peer: Peer, settings: Settings
) -> None:
    peer.state.identity = peer_identity()  # a key the registry does not know
    peer.start()
    enqueue_endorsements(sqlite_database, 1)
    row = _after_one_pass(sqlite_database, settings)
    assert row.state == OutboxState.PENDING
    assert row.last_error_code == "EPIX-DLV-002"
    assert row.receipt is None


def test_a_peer_refusal_fails_the_row_at_once_with_the_peers_reason(
    sqlite_database: Database, peer: Peer, settings: Settings
) -> None:
    peer.state.status = 409
    peer.start()
    enqueue_endorsements(sqlite_database, 1)
    row = _after_one_pass(sqlite_database, settings)
    assert row.state == OutboxState.FAILED
    assert row.attempts == 1
    assert row.last_error_code == "EPIX-DLV-006"
    assert row.last_error is not None and "EPIX-MSG-001" in row.last_error
    assert row.response_status == 409
    assert _audit_count(sqlite_database, "message.delivery_failed") == 1
    with sqlite_database.read() as session:
        detail = session.scalar(
            select(AuditEvent.detail).where(AuditEvent.action == "message.delivery_failed")
        )
    assert json.loads(detail or "{}")["response_status"] == 409


@pytest.mark.parametrize("retry_after", ["\u00b2", "300000000000", "86400"])
def test_a_retry_after_header_of_any_value_schedules_a_bounded_retry(
    sqlite_database: Database, peer: Peer, settings: Settings, retry_after: str
) -> None:
    """Retry-After comes from the far end: a non-ASCII digit, a value past the calendar or
    one longer than EPIX_OUTBOX_MAX_DELAY_SECONDS still records the attempt (no exception
    leaving the row leased, to be re-sent at every lease expiry and never given up) and waits
    no longer than the documented longest delay between two attempts."""
    peer.state.status = 503
    peer.state.retry_after = retry_after
    peer.start()
    enqueue_endorsements(sqlite_database, 1)
    worker = default_worker(sqlite_database, settings)
    try:
        before = utcnow()
        assert worker.run_once() == 1
    finally:
        worker.close()
    (row,) = _rows(sqlite_database)
    assert row.state == OutboxState.PENDING
    assert row.lease_owner is None and row.lease_expires_at is None
    assert row.last_error_code == "EPIX-DLV-001"
    assert row.response_status == 503
    longest = timedelta(seconds=settings.outbox_max_delay_seconds + 1)
    assert before <= row.next_attempt_at <= before + longest


@pytest.mark.parametrize("misbehaviour", ["drip", "flood"])
def test_an_answer_too_slow_or_too_large_is_cut_off_and_retried(
    sqlite_database: Database, peer: Peer, tmp_path: Path, misbehaviour: str
) -> None:
    """The HTTP timeout bounds each read, not the answer: a far end dripping its body one
    byte at a time held a delivery thread (and the whole batch) far past the lease, and an
    endless body was read into memory. Both are cut off (the outbound deadline, the size
    limit), counted as a failed attempt and retried with backoff."""
    settings = sender_settings(tmp_path, outbound_deadline_seconds=1.0, max_body_bytes=65536)
    if misbehaviour == "drip":
        peer.state.drip_seconds = 0.2  # 1000 bytes: 200 s
    else:
        peer.state.flood_bytes = 1 << 30  # 1 GiB
    peer.start()
    enqueue_endorsements(sqlite_database, 1)
    worker = default_worker(sqlite_database, settings)
    try:
        started = time.monotonic()
        assert worker.run_once() == 1
        elapsed = time.monotonic() - started
    finally:
        worker.close()
    assert elapsed < 2 * settings.outbound_deadline_seconds + 1.0
    (row,) = _rows(sqlite_database)
    assert row.state == OutboxState.PENDING
    assert row.lease_owner is None
    assert row.last_error_code == "EPIX-DLV-011"
    assert row.last_error is not None
    assert ("65536 bytes" if misbehaviour == "flood" else "1 s") in row.last_error


def test_rows_give_up_after_the_maximum_age_and_are_resendable(
    sqlite_database: Database, peer: Peer, tmp_path: Path
) -> None:
    settings = sender_settings(tmp_path, outbox_give_up_seconds=1)
    with sqlite_database.unit_of_work() as session:
        outbox.enqueue(
            session,
            kind="endorsement",
            destination_party=PEER_PARTY,
            payload=b"<e/>",
            message_id="late-1",
            sender_party="XA",
            give_up_seconds=settings.outbox_give_up_seconds,
        )
    worker = default_worker(sqlite_database, settings)
    try:
        drain(worker.run_once, sqlite_database, timeout=10)
        (row,) = _rows(sqlite_database)
        assert row.state == OutboxState.FAILED
        assert row.last_error_code == "EPIX-DLV-001"
        with sqlite_database.unit_of_work() as session:
            outbox.resend(session, row.id, give_up_seconds=60)
        peer.start()
        worker.breaker.record_success(row.peer_key)
        drain(worker.run_once, sqlite_database, timeout=10)
    finally:
        worker.close()
    (row,) = _rows(sqlite_database)
    assert row.state == OutboxState.DELIVERED
    assert row.resent_count == 1
    assert peer.state.effects == 1


def test_a_party_without_a_registered_endpoint_is_retried_not_lost(
    sqlite_database: Database, settings: Settings
) -> None:
    with sqlite_database.unit_of_work() as session:
        outbox.enqueue(
            session, kind="endorsement", destination_party="XC", payload=b"<e/>", message_id="x"
        )
    row = _after_one_pass(sqlite_database, settings)
    assert row.state == OutboxState.PENDING
    assert row.last_error_code == "EPIX-DLV-010"


def test_a_peer_endpoint_in_plain_http_is_never_sent_to_and_retried_not_lost(
    sqlite_database: Database, settings: Settings, identity: Identity
) -> None:
    """A registry published before such endpoints were refused may still list one: nothing,
    the API key least of all, goes out in clear (a connection attempt to this unresolvable
    name would end as EPIX-DLV-001 instead)."""
    register_peer(sqlite_database, endpoint="https://xb.invalid:8443", identity=identity)
    with sqlite_database.unit_of_work() as session:
        session.execute(
            update(RegistryParty)
            .where(RegistryParty.code == PEER_PARTY)
            .values(endpoint_url="http://xb.invalid:8080")
        )
        outbox.enqueue(
            session,
            kind="permit",
            destination_party=PEER_PARTY,
            payload=b"<p/>",
            message_id="in-clear",
        )
    row = _after_one_pass(sqlite_database, settings)
    assert row.state == OutboxState.PENDING
    assert row.last_error_code == "EPIX-DLV-012"
    assert "plain http" in (row.last_error or "")


def test_a_frozen_workers_row_is_delivered_by_another_and_its_late_write_refused(
    database: Database, identity: Identity, tmp_path: Path
) -> None:
    peer = Peer(PeerState(identity=identity)).start()
    try:
        register_peer(database, endpoint=peer.url, identity=identity)
        settings = sender_settings(tmp_path)
        enqueue_endorsements(database, 1)
        frozen = default_worker(database, settings)
        skew = timedelta(seconds=settings.outbox_lease_seconds + 1)
        other = Worker(
            database,
            settings,
            local_inbox=frozen.local_inbox,
            verifier=frozen.verifier,
            clock=lambda: utcnow() + skew,  # the lease of the frozen worker has run out
        )
        try:
            (job,) = frozen.claim()
            assert other.run_once() == 1
            assert frozen.process(job) is Result.LEASE_LOST
        finally:
            frozen.close()
            other.close()
        (row,) = _rows(database)
        assert row.state == OutboxState.DELIVERED
        assert row.lease_version == 2
        assert row.receipt == peer.state.receipts[row.message_id]
        assert peer.state.effects == 1
        assert _audit_count(database, "message.transmitted") == 1
    finally:
        peer.stop()


def test_every_attempt_is_audited_with_the_far_ends_answer(
    sqlite_database: Database, peer: Peer, settings: Settings
) -> None:
    """Before, a failed attempt that was retried left no audit event, and the transmission's
    event named neither the peer's HTTP status nor the receipt it answered with."""
    peer.state.lose_first_answer = True
    peer.start()
    (message_id,) = enqueue_endorsements(sqlite_database, 1)
    worker = default_worker(sqlite_database, settings)
    try:
        drain(worker.run_once, sqlite_database)
    finally:
        worker.close()
    (row,) = _rows(sqlite_database)
    assert row.receipt is not None
    with sqlite_database.read() as session:
        events = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.message_id == message_id, AuditEvent.action.like("message.%"))
            .order_by(AuditEvent.sequence)
        ).all()
    trail = [(event.action, event.outcome, json.loads(event.detail)) for event in events]
    assert [(action, outcome) for action, outcome, _ in trail] == [
        ("message.delivery_attempt_failed", "EPIX-DLV-001"),
        ("message.transmitted", "ok"),
    ]
    failed, sent = trail[0][2], trail[1][2]
    assert (failed["attempts"], failed["response_status"]) == (1, None)
    assert failed["reason"] and failed["retry_at"]
    assert (sent["attempts"], sent["response_status"]) == (2, 200)
    assert sent["receipt_sha256"] == hashlib.sha256(row.receipt).hexdigest()
