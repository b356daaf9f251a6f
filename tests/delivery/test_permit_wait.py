"""An endorsement the importing Party's node refuses for not holding its permit yet
(EPIX-MSG-011) waits for it for EPIX_OUTBOX_PERMIT_WAIT_SECONDS, a bound kept apart from the
row's give-up time and applied only while that refusal lasts; and the sender's tracking shows
why a message it sent is still pending. Real HTTP peers on 127.0.0.1, SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from epix.auth.principal import Principal, Role
from epix.db import Database
from epix.db.base import utcnow
from epix.delivery import outbox
from epix.delivery.models import OutboxMessage, OutboxState
from epix.delivery.worker import Worker, default_worker
from epix.exchange.models import Message
from epix.exchange.tracking import track
from epix.settings import Settings
from tests.delivery.helpers import (
    PEER_PARTY,
    Peer,
    PeerState,
    drain,
    peer_identity,
    register_peer,
    sender_settings,
)

NOT_HELD = "The node of XB does not hold permit XA 24XA000001: the permit never reached it."


@pytest.fixture
def peer(database: Database) -> Iterator[Peer]:
    """XB's node, refusing every endorsement for not holding its permit (EPIX-MSG-011)."""
    identity = peer_identity()
    node = Peer(
        PeerState(
            identity=identity, status=422, problem_code="EPIX-MSG-011", problem_detail=NOT_HELD
        )
    )
    register_peer(database, endpoint=node.url, identity=identity)
    node.start()
    yield node
    node.stop()


def _settings(tmp_path: Path, give_up_seconds: int) -> Settings:
    return sender_settings(
        tmp_path, outbox_permit_wait_seconds=1, outbox_give_up_seconds=give_up_seconds
    )


def _enqueue(database: Database, settings: Settings) -> None:
    with database.unit_of_work() as session:
        outbox.enqueue(
            session,
            kind="endorsement",
            destination_party=PEER_PARTY,
            payload=b"<Endorsement/>",
            message_id="end-1",
            sender_party="XA",
            give_up_seconds=settings.outbox_give_up_seconds,
        )


def _row(database: Database) -> OutboxMessage:
    with database.read() as session:
        (row,) = session.scalars(select(OutboxMessage))
        session.expunge(row)
        return row


def _run_until(worker: Worker, moment: datetime) -> None:
    """Let the worker retry whatever is due until ``moment``."""
    while utcnow() < moment:
        if worker.run_once() == 0:
            time.sleep(0.02)


def _refused_for_the_permit(database: Database, worker: Worker) -> OutboxMessage:
    worker.run_once()
    row = _row(database)
    assert (row.state, row.last_error_code) == (OutboxState.PENDING, outbox.WAITING_FOR_PERMIT)
    assert row.last_error is not None and NOT_HELD in row.last_error
    return row


def test_an_outage_after_the_refusal_is_retried_until_the_rows_own_give_up_time(
    database: Database, peer: Peer, tmp_path: Path
) -> None:
    """The wait for the permit was written into the row's give-up time, so once the far end
    stopped refusing for the permit (it went down, or took the permit) a later ordinary failure
    gave the row up at first refusal + the wait, not at its own give-up age."""
    settings = _settings(tmp_path, give_up_seconds=4)
    _enqueue(database, settings)
    created = _row(database)
    worker = default_worker(database, settings)
    try:
        waiting = _refused_for_the_permit(database, worker)
        assert waiting.give_up_at == created.give_up_at
        assert (
            outbox.progress(waiting)["give_up_at"]
            == min(created.give_up_at, waiting.permit_wait_until or created.give_up_at).isoformat()
        )
        peer.stop()
        _run_until(worker, utcnow() + timedelta(seconds=2))
        down = _row(database)
        assert (down.state, down.last_error_code) == (OutboxState.PENDING, "EPIX-DLV-001")
        assert outbox.progress(down)["give_up_at"] == created.give_up_at.isoformat()
        drain(worker.run_once, database, timeout=15)
    finally:
        worker.close()
    failed = _row(database)
    assert (failed.state, failed.last_error_code) == (OutboxState.FAILED, "EPIX-DLV-001")
    # Its final words are the outage's, the last thing that happened, not the old refusal.
    assert failed.last_error is not None and "MSG-011" not in failed.last_error
    assert failed.failed_at is not None
    max_delay = timedelta(seconds=settings.outbox_max_delay_seconds)
    assert failed.failed_at >= created.give_up_at - max_delay


def test_a_refusal_after_an_outage_counts_the_wait_from_the_first_refusal(
    database: Database, peer: Peer, tmp_path: Path
) -> None:
    """Down past the end of the wait, then refusing for the permit again: the row fails at
    once with that refusal (EPIX-DLV-006, its words), as the wait began at the first refusal;
    the outage meanwhile neither gave it up nor restarted the wait."""
    settings = _settings(tmp_path, give_up_seconds=60)
    _enqueue(database, settings)
    worker = default_worker(database, settings)
    try:
        waiting = _refused_for_the_permit(database, worker)
        peer.stop()
        _run_until(worker, utcnow() + timedelta(seconds=1.5))
        down = _row(database)
        assert (down.state, down.last_error_code) == (OutboxState.PENDING, "EPIX-DLV-001")
        assert down.permit_wait_until == waiting.permit_wait_until
        peer.start()
        worker.breaker.record_success(down.peer_key)
        drain(worker.run_once, database, timeout=15)
    finally:
        worker.close()
    failed = _row(database)
    assert (failed.state, failed.last_error_code) == (OutboxState.FAILED, "EPIX-DLV-006")
    assert failed.last_error is not None and NOT_HELD in failed.last_error
    assert failed.attempts == down.attempts + 1


def test_tracking_shows_why_a_message_is_still_pending_and_when_it_is_tried_next(
    database: Database, tmp_path: Path
) -> None:
    """``GET /v1/messages/{id}`` said only ``pending`` for a message its node could not
    deliver yet; it now shows the last refusal's code and words and the next attempt, as an
    endorsement's forwarding and /v1/outbox do."""
    identity = peer_identity()
    node = Peer(PeerState(identity=identity, status=503))
    register_peer(database, endpoint=node.url, identity=identity)
    with database.unit_of_work() as session:
        session.add(
            Message(
                sender_party="XA",
                message_id="permit-1",
                recipient_party=PEER_PARTY,
                document_type="permit",
                sha256="0" * 64,
                body=b"<Permit/>",
                received_at=utcnow(),
                status="accepted",
                delivery_state="pending",
                submitted_by="ma",
            )
        )
        outbox.enqueue(
            session,
            kind="permit",
            destination_party=PEER_PARTY,
            payload=b"<Permit/>",
            message_id="permit-1",
            sender_party="XA",
        )
    node.start()
    worker = default_worker(database, sender_settings(tmp_path))
    try:
        worker.run_once()
    finally:
        worker.close()
        node.stop()
    principal = Principal(1, "ma", "XA", None, frozenset({Role.MANAGEMENT_AUTHORITY}))
    with database.read() as session:
        tracked = track(session, message_id="permit-1", principal=principal, request=None)
    row = _row(database)
    assert tracked["state"] == "pending"
    assert tracked["forwarding"] == {
        "attempts": 1,
        "error_code": "EPIX-DLV-001",
        "error": "The far end answered HTTP 503.",
        "next_attempt_at": row.next_attempt_at.isoformat(),
        "give_up_at": row.give_up_at.isoformat(),
    }


def _permit_given_up_before_its_endorsement(database: Database) -> OutboxMessage:
    """A permit and its endorsement queued for the peer in one order, the permit's first
    delivery given up by another worker: the permit's row."""
    key = outbox.permit_order_key("XA", "24XA000001")
    with database.unit_of_work() as session:
        for kind, message_id in (("permit", "permit-1"), ("endorsement", "end-1")):
            outbox.enqueue(
                session,
                kind=kind,
                destination_party=PEER_PARTY,
                payload=b"<doc/>",
                message_id=message_id,
                sender_party="XA",
                order_key=key,
            )
    with database.unit_of_work() as session:
        (permit,) = outbox.claim_due(session, owner="other", lease_seconds=30, limit=1)
        outbox.mark_attempt_failed(
            session, permit, code="EPIX-DLV-001", reason="down", retry_at=None
        )
    return permit


def test_a_permit_delivered_while_its_endorsement_is_being_refused_still_wakes_it(
    database: Database, tmp_path: Path
) -> None:
    """The permit's delivery wakes the endorsements waiting for it; one out for an attempt at
    that moment (leased, already due) was not woken, and the refusal it then brought back (the
    importer's node checked it a moment before the permit landed) set its next attempt a whole
    backoff away, up to EPIX_OUTBOX_MAX_DELAY_SECONDS, or failed it near the end of the wait,
    with the permit there. Now such a refusal is tried again at once; one that comes after the
    permit's delivery waits out its backoff as before (no loop against a node that lost it)."""
    identity = peer_identity()
    node = Peer(
        PeerState(
            identity=identity,
            status=422,
            problem_code="EPIX-MSG-011",
            problem_detail=NOT_HELD,
            delay_seconds=1.0,  # the refusal is on its way while the permit is delivered
        )
    )
    register_peer(database, endpoint=node.url, identity=identity)
    permit = _permit_given_up_before_its_endorsement(database)
    settings = sender_settings(
        tmp_path,
        outbox_base_delay_seconds=600.0,
        outbox_max_delay_seconds=600.0,
        outbox_http_timeout_seconds=5.0,
    )
    node.start()
    worker = default_worker(database, settings)
    try:
        (job,) = worker.claim()
        assert job.claim.message_id == "end-1"
        attempt = threading.Thread(target=worker.process, args=(job,))
        attempt.start()
        # Meanwhile the operator resends the permit and another worker delivers it.
        with database.unit_of_work() as session:
            outbox.resend(session, permit.id)
        with database.unit_of_work() as session:
            (resent,) = outbox.claim_due(session, owner="other", lease_seconds=30, limit=1)
            outbox.mark_delivered(session, resent)
        attempt.join(30)
        woken = {row.message_id: row for row in _rows(database)}["end-1"]
        assert (woken.state, woken.last_error_code) == (
            OutboxState.PENDING,
            outbox.WAITING_FOR_PERMIT,
        )
        assert woken.next_attempt_at <= utcnow(), "the refusal crossing the permit slept"
        # Tried again at once; still refused (the far end lost the permit): a backoff now.
        node.state.delay_seconds = 0.0
        assert worker.run_once() == 1
    finally:
        worker.close()
        node.stop()
    again = {row.message_id: row for row in _rows(database)}["end-1"]
    assert again.last_error_code == outbox.WAITING_FOR_PERMIT
    assert again.next_attempt_at > utcnow()


def _rows(database: Database) -> list[OutboxMessage]:
    with database.read() as session:
        rows = list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
        session.expunge_all()
        return rows


def test_a_permit_delivery_committing_while_the_refusal_is_recorded_still_wakes_it(
    database: Database, tmp_path: Path
) -> None:
    """The same crossing with the permit's delivery not committed yet when the endorsement's
    refusal is recorded: its wake-up already passed over the leased row, so the refusal must
    wait for that delivery to commit and see it (the permit's row is locked), not miss it."""
    identity = peer_identity()
    node = Peer(
        PeerState(
            identity=identity, status=422, problem_code="EPIX-MSG-011", problem_detail=NOT_HELD
        )
    )
    register_peer(database, endpoint=node.url, identity=identity)
    permit = _permit_given_up_before_its_endorsement(database)
    settings = sender_settings(
        tmp_path, outbox_base_delay_seconds=600.0, outbox_max_delay_seconds=600.0
    )
    node.start()
    worker = default_worker(database, settings)
    marked, commit = threading.Event(), threading.Event()

    def deliver_the_permit() -> None:
        with database.unit_of_work() as session:
            (resent,) = outbox.claim_due(session, owner="other", lease_seconds=30, limit=1)
            outbox.mark_delivered(session, resent)
            marked.set()
            commit.wait(30)

    try:
        (job,) = worker.claim()
        with database.unit_of_work() as session:
            outbox.resend(session, permit.id)
        delivering = threading.Thread(target=deliver_the_permit)
        delivering.start()
        assert marked.wait(30)
        threading.Timer(1.0, commit.set).start()  # while the refusal is being recorded
        worker.process(job)
        delivering.join(30)
    finally:
        worker.close()
        node.stop()
    woken = {row.message_id: row for row in _rows(database)}["end-1"]
    assert (woken.state, woken.last_error_code) == (OutboxState.PENDING, outbox.WAITING_FOR_PERMIT)
    assert woken.next_attempt_at <= utcnow(), "the refusal missed the permit's delivery"
