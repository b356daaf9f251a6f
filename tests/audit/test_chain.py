"""The chain is tamper-evident: alter, delete or reorder any row and verify names it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from itertools import pairwise

import pytest
from sqlalchemy import delete, select, text, update

from epix.audit.context import RequestContext
from epix.audit.models import AuditEvent
from epix.audit.service import GENESIS_HASH, compute_hash, format_time, record_event
from epix.audit.verify import verify_chain
from epix.db import Database

from .conftest import fill


def _verify(database: Database) -> tuple[bool, int | None]:
    with database.unit_of_work() as session:
        report = verify_chain(session)
    return report.ok, report.broken_at


def test_intact_chain_verifies(database: Database) -> None:
    fill(database, 12)
    with database.unit_of_work() as session:
        report = verify_chain(session)
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.sequence)).all()
    assert report.ok and report.events_checked == 12
    assert [event.sequence for event in events] == list(range(1, 13))
    assert events[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in pairwise(events))


def test_empty_chain_verifies(database: Database) -> None:
    assert _verify(database) == (True, None)


def test_altered_row_is_named(database: Database) -> None:
    fill(database, 10)
    with database.unit_of_work() as session:
        session.execute(
            update(AuditEvent).where(AuditEvent.sequence == 6).values(outcome="EPIX-SIG-011")
        )
    assert _verify(database) == (False, 6)


def test_altered_row_with_recomputed_hash_is_still_named(database: Database) -> None:
    """An attacker who also rewrites the row's hash breaks the link to the next event."""
    fill(database, 10)
    with database.unit_of_work() as session:
        event = session.get(AuditEvent, 4)
        assert event is not None
        event.permit_number = "FORGED"
        event.hash = compute_hash(event)
    ok, broken = _verify(database)
    assert not ok and broken == 5


def test_deleted_row_is_named(database: Database) -> None:
    fill(database, 10)
    with database.unit_of_work() as session:
        session.execute(delete(AuditEvent).where(AuditEvent.sequence == 3))
    assert _verify(database) == (False, 3)


def test_deleted_tail_is_named(database: Database) -> None:
    fill(database, 10)
    with database.unit_of_work() as session:
        session.execute(delete(AuditEvent).where(AuditEvent.sequence >= 9))
    assert _verify(database) == (False, 9)


def test_reordered_rows_are_named(database: Database) -> None:
    fill(database, 10)
    with database.unit_of_work() as session:
        # Swap events 4 and 7 by exchanging their sequence numbers.
        session.execute(update(AuditEvent).where(AuditEvent.sequence == 4).values(sequence=-1))
        session.execute(update(AuditEvent).where(AuditEvent.sequence == 7).values(sequence=4))
        session.execute(update(AuditEvent).where(AuditEvent.sequence == -1).values(sequence=7))
    assert _verify(database) == (False, 4)


def test_event_records_who_what_where_and_never_credentials(database: Database) -> None:
    request = RequestContext(
        method="POST",
        path="/v1/messages",
        remote_addr="192.0.2.7",
        headers={
            "Authorization": "Bearer epix_secret_value",
            "X-API-Key": "epix_secret_value",
            "Cookie": "epix_session=secret",
            "User-Agent": "ma-system/1.0",
        },
    )
    with database.unit_of_work() as session:
        event = record_event(
            session,
            action="submit",
            outcome="ok",
            party="XB",
            message_id="m-1",
            permit_number="XA-1",
            request=request,
            payload=b"<permit/>",
        )
    assert event.headers == '{"user-agent":"ma-system/1.0"}'
    assert event.payload_sha256 is not None and len(event.payload_sha256) == 64
    assert event.occurred_at.microsecond % 1000 == 0
    assert (event.method, event.path, event.remote_addr) == ("POST", "/v1/messages", "192.0.2.7")
    with database.engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM audit_events")).all()
    assert "secret" not in repr(rows)


def test_concurrent_writers_never_fork_the_chain(database: Database) -> None:
    threads, per_thread = 6, 15
    errors: list[BaseException] = []

    def writer(number: int) -> None:
        try:
            for index in range(per_thread):
                with database.unit_of_work() as session:
                    record_event(
                        session, action="pull", outcome="ok", detail={"t": number, "i": index}
                    )
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    with database.unit_of_work() as session:
        report = verify_chain(session)
        sequences = session.scalars(select(AuditEvent.sequence).order_by(AuditEvent.sequence)).all()
    assert report.ok, report.findings
    assert list(sequences) == list(range(1, threads * per_thread + 1))


@pytest.mark.parametrize("count", [1, 3])
def test_sequence_continues_across_transactions(database: Database, count: int) -> None:
    fill(database, count)
    fill(database, count)
    assert _verify(database) == (True, None)


def test_event_times_never_go_back_along_the_chain_when_the_clock_does(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clock stepped back (NTP correction, VM restore) must not make a later event look
    older than an earlier one: in court the order by time and the order of the chain agree."""
    readings = iter(
        [
            datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC),
            datetime(2026, 3, 1, 11, 59, 0, tzinfo=UTC),  # stepped back a minute
            datetime(2026, 3, 1, 12, 0, 1, tzinfo=UTC),
        ]
    )
    monkeypatch.setattr("epix.audit.service.utcnow", lambda: next(readings))
    fill(database, 3)
    with database.read() as session:
        times = session.scalars(select(AuditEvent.occurred_at).order_by(AuditEvent.sequence)).all()
    assert [format_time(moment) for moment in times] == [
        "2026-03-01T12:00:00.000Z",
        "2026-03-01T12:00:00.000Z",
        "2026-03-01T12:00:01.000Z",
    ]
    assert _verify(database) == (True, None)
