"""The outbox table: transactional enqueue, disjoint lease claims, fencing, give-up and resend."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from epix.db import Database
from epix.db.base import utcnow
from epix.delivery import outbox
from epix.delivery.models import OutboxMessage, OutboxState
from epix.errors import EpixError


def _enqueue(database: Database, count: int, **extra: object) -> None:
    with database.unit_of_work() as session:
        for i in range(count):
            outbox.enqueue(
                session,
                kind="endorsement",
                destination_party="XB",
                payload=f"<doc n='{i}'/>".encode(),
                message_id=f"msg-{i}",
                sender_party="XA",
                **extra,  # type: ignore[arg-type]
            )


def _count(database: Database) -> int:
    with database.unit_of_work() as session:
        return int(session.scalar(select(func.count()).select_from(OutboxMessage)) or 0)


def test_row_commits_with_the_callers_transaction_or_not_at_all(database: Database) -> None:
    with pytest.raises(RuntimeError), database.unit_of_work() as session:
        outbox.enqueue(
            session, kind="endorsement", destination_party="XB", payload=b"<a/>", message_id="m1"
        )
        raise RuntimeError("the change that caused it failed")
    assert _count(database) == 0
    _enqueue(database, 1)
    assert _count(database) == 1


def test_enqueueing_the_same_message_twice_keeps_one_row(database: Database) -> None:
    _enqueue(database, 3)
    _enqueue(database, 3)
    assert _count(database) == 3
    with database.unit_of_work() as session:
        row = session.scalars(
            select(OutboxMessage).where(OutboxMessage.message_id == "msg-0")
        ).one()
        assert row.headers["X-EPIX-Message-Id"] == "msg-0"
        assert row.headers["X-EPIX-From"] == "XA"
        assert row.headers["X-EPIX-To"] == "XB"
        assert row.peer_key == "party:XB"


def test_exchange_document_types_map_to_kinds_and_unknown_kinds_are_refused(
    sqlite_database: Database,
) -> None:
    with sqlite_database.unit_of_work() as session:
        row = outbox.enqueue(
            session, kind="status", destination_party="XB", payload=b"<s/>", message_id="s1"
        )
        assert row.kind == "status_change"
        with pytest.raises(ValueError):
            outbox.enqueue(
                session, kind="telegram", destination_party="XB", payload=b"x", message_id="t1"
            )


def test_concurrent_claimers_never_get_the_same_row(database: Database) -> None:
    _enqueue(database, 60)
    claimed: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    start = threading.Barrier(len(claimed))

    def claimer(owner: str) -> None:
        start.wait()
        while True:
            with database.unit_of_work() as session:
                claims = outbox.claim_due(session, owner=owner, lease_seconds=60, limit=7)
            if not claims:
                return
            claimed[owner] += [claim.id for claim in claims]

    threads = [threading.Thread(target=claimer, args=(owner,)) for owner in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    every = [row_id for ids in claimed.values() for row_id in ids]
    assert len(every) == 60
    assert len(set(every)) == 60


def test_a_row_whose_lease_expired_is_claimed_again_and_the_late_write_is_refused(
    database: Database,
) -> None:
    _enqueue(database, 1)
    now = utcnow()
    with database.unit_of_work() as session:
        (frozen,) = outbox.claim_due(session, owner="frozen", lease_seconds=5, limit=10, now=now)
    with database.unit_of_work() as session:
        assert outbox.claim_due(session, owner="other", lease_seconds=5, limit=10, now=now) == []
    later = now + timedelta(seconds=6)
    with database.unit_of_work() as session:
        (fresh,) = outbox.claim_due(session, owner="other", lease_seconds=5, limit=10, now=later)
    assert fresh.id == frozen.id
    assert fresh.version == frozen.version + 1
    assert fresh.attempts == 2

    with database.unit_of_work() as session:
        outbox.mark_delivered(session, fresh, receipt=b"<r/>", now=later)
    with pytest.raises(EpixError) as refused, database.unit_of_work() as session:
        outbox.mark_delivered(session, frozen, receipt=b"<late/>")
    assert refused.value.findings[0].code == "EPIX-DLV-005"
    with database.unit_of_work() as session:
        row = outbox.get(session, fresh.id)
        assert row.state == OutboxState.DELIVERED
        assert row.receipt == b"<r/>"


def test_same_owner_cannot_complete_with_a_stale_lease_version(sqlite_database: Database) -> None:
    """The fencing token, not the owner name, decides: a re-claim by the same worker wins."""
    _enqueue(sqlite_database, 1)
    now = utcnow()
    with sqlite_database.unit_of_work() as session:
        (first,) = outbox.claim_due(session, owner="w", lease_seconds=1, limit=1, now=now)
    with sqlite_database.unit_of_work() as session:
        (second,) = outbox.claim_due(
            session, owner="w", lease_seconds=1, limit=1, now=now + timedelta(seconds=2)
        )
    with pytest.raises(EpixError), sqlite_database.unit_of_work() as session:
        outbox.mark_attempt_failed(session, first, code="EPIX-DLV-001", reason="late", retry_at=now)
    with sqlite_database.unit_of_work() as session:
        outbox.mark_delivered(session, second)


def test_failure_after_the_give_up_age_fails_the_row_and_an_admin_can_resend(
    database: Database,
) -> None:
    _enqueue(database, 1, give_up_seconds=60)
    now = utcnow()
    with database.unit_of_work() as session:
        (claim,) = outbox.claim_due(session, owner="w", lease_seconds=5, limit=1, now=now)
    with database.unit_of_work() as session:
        gave_up = outbox.mark_attempt_failed(
            session,
            claim,
            code="EPIX-DLV-001",
            reason="connection refused",
            retry_at=now + timedelta(seconds=30),
        )
    assert not gave_up
    later = now + timedelta(seconds=31)
    with database.unit_of_work() as session:
        (claim,) = outbox.claim_due(session, owner="w", lease_seconds=5, limit=1, now=later)
    with database.unit_of_work() as session:
        gave_up = outbox.mark_attempt_failed(
            session,
            claim,
            code="EPIX-DLV-001",
            reason="connection refused",
            retry_at=later + timedelta(seconds=40),
        )
    assert gave_up
    with database.unit_of_work() as session:
        failed = outbox.list_rows(session, state=OutboxState.FAILED, sender_party="XA")
        assert [row.last_error for row in failed] == ["connection refused"]
        assert outbox.claim_due(session, owner="w", lease_seconds=5, limit=1, now=later) == []

    with database.unit_of_work() as session:
        row = outbox.resend(session, claim.id, give_up_seconds=60)
        assert row.state == OutboxState.PENDING
        assert row.resent_count == 1
    with pytest.raises(EpixError) as again, database.unit_of_work() as session:
        outbox.resend(session, claim.id)
    assert again.value.findings[0].code == "EPIX-DLV-008"
    with database.unit_of_work() as session:
        assert len(outbox.claim_due(session, owner="w", lease_seconds=5, limit=1)) == 1


def test_resending_an_unknown_row_is_refused(sqlite_database: Database) -> None:
    with pytest.raises(EpixError) as refused, sqlite_database.unit_of_work() as session:
        outbox.resend(session, 4242)
    assert refused.value.findings[0].code == "EPIX-DLV-009"


def test_claims_skip_peers_whose_circuit_is_open(sqlite_database: Database) -> None:
    _enqueue(sqlite_database, 2)
    with sqlite_database.unit_of_work() as session:
        outbox.enqueue(
            session, kind="endorsement", destination_party="XC", payload=b"<c/>", message_id="c"
        )
    with sqlite_database.unit_of_work() as session:
        claims = outbox.claim_due(
            session, owner="w", lease_seconds=5, limit=10, skip_peers={"party:XB"}
        )
    assert [claim.destination_party for claim in claims] == ["XC"]


def test_rows_about_one_permit_to_one_party_are_claimed_in_queue_order(
    database: Database,
) -> None:
    """A cancellation queued after its permit waits while the permit is being delivered or
    waiting for a retry, and goes once the permit is delivered or given up; other permits and
    other destinations are not held back."""
    key = outbox.permit_order_key("XA", "P-1")
    with database.unit_of_work() as session:
        for message_id, destination, order_key in [
            ("permit", "XB", key),
            ("cancel", "XB", key),
            ("cancel-elsewhere", "XC", key),
            ("other-permit", "XB", outbox.permit_order_key("XA", "P-2")),
        ]:
            outbox.enqueue(
                session,
                kind="status_change",
                destination_party=destination,
                payload=b"<doc/>",
                message_id=message_id,
                order_key=order_key,
            )

    def claim(owner: str) -> list[outbox.Claim]:
        with database.unit_of_work() as session:
            return outbox.claim_due(session, owner=owner, lease_seconds=30, limit=10)

    first = claim("w1")
    assert sorted(c.message_id for c in first) == ["cancel-elsewhere", "other-permit", "permit"]
    assert claim("w2") == []  # the cancellation waits while the permit is leased
    (permit,) = [c for c in first if c.message_id == "permit"]
    with database.unit_of_work() as session:
        outbox.mark_attempt_failed(
            session, permit, code="EPIX-DLV-001", reason="down", retry_at=utcnow()
        )
    retried = claim("w2")
    assert [c.message_id for c in retried] == ["permit"]  # due again; still before the cancel
    with database.unit_of_work() as session:
        outbox.mark_delivered(session, retried[0])
    assert [c.message_id for c in claim("w3")] == ["cancel"]


def _claims(database: Database, owner: str) -> dict[str, outbox.Claim]:
    """What ``owner`` claims of the due rows, by message id."""
    with database.unit_of_work() as session:
        claims = outbox.claim_due(session, owner=owner, lease_seconds=30, limit=10)
    return {c.message_id: c for c in claims}


def test_a_delivered_permit_makes_the_endorsements_waiting_for_it_due_at_once(
    database: Database,
) -> None:
    """An endorsement the importer's node refused for not holding its permit (EPIX-DLV-014)
    waits out its backoff; once the permit is delivered there it is due at once. Rows about
    other permits or to other Parties keep their time."""
    key = outbox.permit_order_key("XA", "P-1")
    with database.unit_of_work() as session:
        for kind, message_id, destination, order_key in [
            ("permit", "permit", "XB", key),
            ("endorsement", "waiting", "XB", key),
            ("endorsement", "waiting-elsewhere", "XC", key),
            ("endorsement", "other-permit", "XB", outbox.permit_order_key("XA", "P-2")),
        ]:
            outbox.enqueue(
                session,
                kind=kind,
                destination_party=destination,
                payload=b"<doc/>",
                message_id=message_id,
                order_key=order_key,
            )

    first = _claims(database, "w1")
    later = utcnow() + timedelta(hours=1)
    with database.unit_of_work() as session:
        outbox.mark_attempt_failed(
            session, first["permit"], code="EPIX-DLV-001", reason="down", retry_at=None
        )
    refused = _claims(database, "w2")
    assert sorted(refused) == ["waiting"]
    with database.unit_of_work() as session:
        for claimed in [refused["waiting"], first["waiting-elsewhere"], first["other-permit"]]:
            outbox.mark_attempt_failed(
                session,
                claimed,
                code=outbox.WAITING_FOR_PERMIT,
                reason="HTTP 422 EPIX-MSG-011",
                retry_at=later,
            )
        outbox.resend(session, first["permit"].id)
    resent = _claims(database, "w3")
    assert sorted(resent) == ["permit"]
    with database.unit_of_work() as session:
        outbox.mark_delivered(session, resent["permit"])
    assert sorted(_claims(database, "w4")) == ["waiting"]


def test_a_delivered_permit_wakes_an_endorsement_whose_last_try_after_the_refusal_met_an_outage(
    database: Database,
) -> None:
    """Refused for not holding the permit, then tried again while the importer's node was
    down (EPIX-DLV-001, its last error now): the endorsement still waits for its permit (the
    wait's bound stays on the row), but the permit's delivery left it asleep for the rest of
    its backoff, because only rows whose last error was EPIX-DLV-014 were woken."""
    key = outbox.permit_order_key("XA", "P-1")
    with database.unit_of_work() as session:
        for kind, message_id in (("permit", "permit"), ("endorsement", "waiting")):
            outbox.enqueue(
                session,
                kind=kind,
                destination_party="XB",
                payload=b"<doc/>",
                message_id=message_id,
                order_key=key,
            )

    permit = _claims(database, "w1")["permit"]
    with database.unit_of_work() as session:
        outbox.mark_attempt_failed(
            session, permit, code="EPIX-DLV-001", reason="down", retry_at=None
        )
    later = utcnow() + timedelta(hours=1)
    with database.unit_of_work() as session:
        outbox.mark_attempt_failed(
            session,
            _claims(database, "w2")["waiting"],
            code=outbox.WAITING_FOR_PERMIT,
            reason="HTTP 422 EPIX-MSG-011",
            retry_at=utcnow(),
            permit_wait_until=utcnow() + timedelta(days=1),
        )
    with database.unit_of_work() as session:
        outbox.mark_attempt_failed(
            session,
            _claims(database, "w3")["waiting"],
            code="EPIX-DLV-001",
            reason="The far end answered HTTP 503.",
            retry_at=later,
        )
        outbox.resend(session, permit.id)
    resent = _claims(database, "w4")
    assert sorted(resent) == ["permit"]
    with database.unit_of_work() as session:
        outbox.mark_delivered(session, resent["permit"])
    assert sorted(_claims(database, "w5")) == ["waiting"]
