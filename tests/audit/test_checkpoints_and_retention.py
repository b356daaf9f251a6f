"""Signed checkpoints verify and forgeries show; purges never remove younger records."""

from __future__ import annotations

import base64
import json
import threading
import time as clock
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, update

from epix.audit.checkpoints import create_checkpoint, sign_pending_checkpoints
from epix.audit.models import AuditChainHead, AuditCheckpoint, AuditEvent
from epix.audit.retention import PurgePlan, plan_purge, purge, purge_batch
from epix.audit.service import (
    GENESIS_HASH,
    HEAD_ROW_ID,
    PURGE_ACTION,
    AuditPolicy,
    compute_hash,
    configure_audit,
    earliest_purge_date,
    record_event,
)
from epix.audit.signing import CheckpointSigner, certificate_fingerprint
from epix.audit.verify import ChainReport, verify_chain
from epix.cli.main import cli
from epix.cli.users import cli_session
from epix.cli.worker import _database as worker_database
from epix.db import Database
from epix.db.base import utcnow
from epix.errors import EpixError
from epix.exchange.node_identity import node_identity
from epix.settings import get_settings
from tests.db.node_process import epix, running_node
from tests.pki import make_identity

from .conftest import fill


def test_every_nth_event_leaves_a_checkpoint_that_the_node_signs(
    database: Database, node_signer: CheckpointSigner, policy: None
) -> None:
    configure_audit(AuditPolicy(checkpoint_every=5, retention_years=5))
    fill(database, 12)
    with database.unit_of_work() as session:
        pending = session.scalars(select(AuditCheckpoint.sequence)).all()
        assert sorted(pending) == [5, 10]
        assert verify_chain(session).checkpoints_pending == 2
        assert sign_pending_checkpoints(session, node_signer) == 2
    fingerprint = certificate_fingerprint(node_signer.cert_pem)
    with database.unit_of_work() as session:
        report = verify_chain(session, trusted_fingerprints=[fingerprint])
    assert report.ok and report.checkpoints_verified == 2 and report.checkpoints_pending == 0


def test_on_demand_checkpoint_covers_the_head(
    database: Database, node_signer: CheckpointSigner, no_auto_checkpoints: None
) -> None:
    fill(database, 3)
    with database.unit_of_work() as session:
        checkpoint = create_checkpoint(session, node_signer)
        head = session.get(AuditEvent, 3)
        assert head is not None
        assert (checkpoint.sequence, checkpoint.head_hash) == (3, head.hash)
    with database.unit_of_work() as session:
        assert verify_chain(session).ok


def test_forged_checkpoint_hash_is_detected(
    database: Database, node_signer: CheckpointSigner, no_auto_checkpoints: None
) -> None:
    fill(database, 3)
    with database.unit_of_work() as session:
        create_checkpoint(session, node_signer)
    with database.unit_of_work() as session:
        session.execute(
            update(AuditCheckpoint).where(AuditCheckpoint.sequence == 3).values(head_hash="f" * 64)
        )
    with database.unit_of_work() as session:
        report = verify_chain(session)
    assert not report.ok
    assert report.broken_at == 3


def test_checkpoint_signed_by_another_key_is_detected(
    database: Database, node_signer: CheckpointSigner, no_auto_checkpoints: None
) -> None:
    fill(database, 3)
    intruder = make_identity("not the node", kind="ec", size=256)
    with database.unit_of_work() as session:
        create_checkpoint(session, CheckpointSigner(intruder.key_pem, intruder.cert_pem))
    trusted = [certificate_fingerprint(node_signer.cert_pem)]
    with database.unit_of_work() as session:
        report = verify_chain(session, trusted_fingerprints=trusted)
    assert [f.code for f in report.findings] == ["EPIX-AUDIT-002"]


def test_tampered_checkpoint_signature_is_detected(
    database: Database, node_signer: CheckpointSigner, no_auto_checkpoints: None
) -> None:
    fill(database, 3)
    with database.unit_of_work() as session:
        create_checkpoint(session, node_signer)
    with database.unit_of_work() as session:
        session.execute(
            update(AuditCheckpoint)
            .where(AuditCheckpoint.sequence == 3)
            .values(signature=base64.b64encode(b"\x00" * 64).decode())
        )
    with database.unit_of_work() as session:
        report = verify_chain(session)
    assert [f.code for f in report.findings] == ["EPIX-AUDIT-002"]


def test_purge_date_is_the_latest_of_the_retention_periods() -> None:
    # Expiry 2024-06-30, trade unknown: the trade can be in 2024, annual report 2024.
    assert earliest_purge_date(
        date(2024, 1, 10), retention_years=5, permit_valid_until=date(2024, 6, 30)
    ) == date(2030, 1, 1)
    # Trade reported for 2026 (a later year than the expiry suggests) wins.
    assert earliest_purge_date(
        date(2024, 1, 10), retention_years=5, permit_valid_until=date(2024, 6, 30), trade_year=2026
    ) == date(2032, 1, 1)
    # Never earlier than N years after the event itself.
    assert earliest_purge_date(date(2024, 3, 1), retention_years=5, trade_year=2010) == date(
        2029, 3, 2
    )
    assert earliest_purge_date(date(2024, 2, 29), retention_years=5, trade_year=2010) == date(
        2029, 3, 2
    )


def _age(database: Database, sequences: range, purge_after: date) -> None:
    with database.unit_of_work() as session:
        session.execute(
            update(AuditEvent)
            .where(AuditEvent.sequence.in_(list(sequences)))
            .values(purge_after=purge_after)
        )


def test_purge_removes_only_due_prefix_and_chain_still_verifies(
    database: Database, node_signer: CheckpointSigner, no_auto_checkpoints: None
) -> None:
    """Events 1-4 are due, 5 is young, 6-8 are due: only 1-4 may go."""
    fill(database, 8)
    with database.unit_of_work() as session:
        session.execute(update(AuditEvent).values(purge_after=date(2000, 1, 1)))
    with database.unit_of_work() as session:
        assert not verify_chain(session).ok  # the test's edit is itself detected
    _rechain(database)
    with database.unit_of_work() as session:
        session.execute(
            update(AuditEvent).where(AuditEvent.sequence == 5).values(purge_after=date(2999, 1, 1))
        )
    _rechain(database)
    today = utcnow().date()
    with database.unit_of_work() as session:
        assert plan_purge(session, before=today).count == 4
    dry = purge(database, before=today, signer=node_signer, dry_run=True)
    assert dry.through_sequence == 4
    with database.unit_of_work() as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 8
    done = purge(database, before=today, signer=node_signer)
    assert (done.through_sequence, done.count) == (4, 4)
    with database.unit_of_work() as session:
        remaining = session.scalars(select(AuditEvent).order_by(AuditEvent.sequence)).all()
        assert [event.sequence for event in remaining] == [5, 6, 7, 8, 9]
        assert remaining[0].purge_after > today
        assert remaining[-1].action == "audit_purge"
        trusted = [certificate_fingerprint(node_signer.cert_pem)]
        report = verify_chain(session, trusted_fingerprints=trusted)
    assert report.ok, report.findings
    assert report.first_sequence == 5


def _all_due(database: Database, count: int) -> None:
    fill(database, count)
    with database.unit_of_work() as session:
        session.execute(update(AuditEvent).values(purge_after=date(2000, 1, 1)))
    _rechain(database)


def _purge_events(database: Database) -> list[AuditEvent]:
    with database.read() as session:
        query = select(AuditEvent).where(AuditEvent.action == PURGE_ACTION)
        return list(session.scalars(query.order_by(AuditEvent.sequence)).all())


def _verified(database: Database, signer: CheckpointSigner) -> ChainReport:
    trusted = [certificate_fingerprint(signer.cert_pem)]
    with database.read() as session:
        return verify_chain(session, trusted_fingerprints=trusted)


def test_a_large_purge_goes_in_signed_batches(
    database: Database, node_signer: CheckpointSigner, no_auto_checkpoints: None
) -> None:
    """2,500 due events in batches of 1,000: three transactions, each a whole purge (a signed
    checkpoint at its last event, a signed purge event naming it)."""
    _all_due(database, 2500)
    done = purge(database, before=utcnow().date(), signer=node_signer, batch_events=1000)
    assert (done.through_sequence, done.count) == (2500, 2500)
    purges = _purge_events(database)
    assert [event.sequence for event in purges] == [2501, 2502, 2503]
    details = [json.loads(event.detail) for event in purges]
    assert [(d["through_sequence"], d["count"]) for d in details] == [
        (1000, 1000),
        (2000, 1000),
        (2500, 500),
    ]
    report = _verified(database, node_signer)
    assert report.ok, report.findings
    assert (report.first_sequence, report.events_checked) == (2501, 3)


def test_a_purge_stopped_after_a_batch_leaves_a_verifiable_chain(
    database: Database, node_signer: CheckpointSigner, no_auto_checkpoints: None
) -> None:
    """A purge killed half-way (or whose database went away) has committed whole batches
    only; the next purge removes the rest."""
    _all_due(database, 30)
    today = utcnow().date()
    with database.unit_of_work() as session:
        assert purge_batch(
            session, through=30, before=today, signer=node_signer, limit=10
        ) == PurgePlan(10, 10)
    report = _verified(database, node_signer)
    assert report.ok, report.findings
    assert report.first_sequence == 11
    assert purge(database, before=today, signer=node_signer).count == 20
    report = _verified(database, node_signer)
    assert report.ok, report.findings
    assert report.first_sequence == 31  # the first batch's purge event, 31, is young


def test_audited_writes_go_on_between_the_batches_of_a_purge(
    database: Database, node_signer: CheckpointSigner, no_auto_checkpoints: None
) -> None:
    """One purge transaction used to hold the chain lock for its whole delete, so every
    audited request waited for it (on PostgreSQL until its statement timeout ended it). A
    write that starts once the first batch is committed now comes in before the last one."""
    _all_due(database, 2000)
    outcome: list[object] = []

    def run_purge() -> None:
        try:
            outcome.append(
                purge(database, before=utcnow().date(), signer=node_signer, batch_events=20)
            )
        except Exception as exc:
            outcome.append(exc)

    purger = threading.Thread(target=run_purge)
    purger.start()
    try:
        deadline = clock.monotonic() + 60
        while not _purge_events(database):
            assert not outcome and clock.monotonic() < deadline, outcome
            clock.sleep(0.001)
        fill(database, 1, action="concurrent.write")
    finally:
        purger.join(120)
    assert not purger.is_alive()
    assert outcome == [PurgePlan(through_sequence=2000, count=2000)]
    with database.read() as session:
        after_purge = session.scalars(select(AuditEvent.action).order_by(AuditEvent.sequence)).all()
    assert after_purge.count(PURGE_ACTION) == 100
    written_at = after_purge.index("concurrent.write")
    assert 0 < written_at < len(after_purge) - 1, "the write did not come between two batches"
    report = _verified(database, node_signer)
    assert report.ok, report.findings
    assert report.first_sequence == 2001


def test_purge_of_young_records_removes_nothing(
    database: Database, node_signer: CheckpointSigner, no_auto_checkpoints: None
) -> None:
    fill(database, 5)
    plan = purge(database, before=utcnow().date(), signer=node_signer)
    assert plan.count == 0
    with database.unit_of_work() as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 5


def test_purge_refuses_a_future_date(database: Database, node_signer: CheckpointSigner) -> None:
    with pytest.raises(EpixError) as refusal:
        purge(database, before=utcnow().date() + timedelta(days=1), signer=node_signer)
    assert refusal.value.findings[0].code == "EPIX-REQ-004"


def test_unanchored_gap_at_the_start_is_named(
    database: Database, no_auto_checkpoints: None
) -> None:
    fill(database, 5)
    with database.unit_of_work() as session:
        session.execute(AuditEvent.__table__.delete().where(AuditEvent.sequence <= 2))
    with database.unit_of_work() as session:
        report = verify_chain(session)
    assert report.broken_at == 3


def test_record_event_keeps_permit_records_long_enough(database: Database) -> None:
    with database.unit_of_work() as session:
        event = record_event(
            session,
            action="submit",
            outcome="ok",
            permit_valid_until=date(2031, 5, 1),
        )
    assert event.purge_after == date(2037, 1, 1)


def test_a_permit_valid_into_the_year_9999_is_kept_to_the_last_day(database: Database) -> None:
    """The rules accept an import permit issued in 9999 and valid to its end; its retention
    ran past the calendar (a ValueError: its submission was answered 500, not stored)."""
    with database.unit_of_work() as session:
        event = record_event(
            session, action="submit", outcome="ok", permit_valid_until=date(9999, 12, 31)
        )
    assert event.purge_after == date.max


def test_checkpoints_are_signed_as_they_are_written_when_the_node_key_is_configured(
    database: Database, node_signer: CheckpointSigner, policy: None
) -> None:
    configure_audit(AuditPolicy(checkpoint_every=4, retention_years=5, signer=lambda: node_signer))
    fill(database, 9)
    with database.unit_of_work() as session:
        report = verify_chain(
            session, trusted_fingerprints=[certificate_fingerprint(node_signer.cert_pem)]
        )
    assert report.ok
    assert (report.checkpoints_verified, report.checkpoints_pending) == (2, 0)


@pytest.mark.parametrize("command", ["worker", "users", "registry follow"])
def test_node_processes_sign_checkpoints_with_the_node_key(
    database: Database, policy: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    """``epix worker``, ``epix users`` and ``epix registry follow`` (whose imports are audited)
    used to leave checkpoints unsigned."""
    monkeypatch.setenv("EPIX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EPIX_AUDIT_CHECKPOINT_EVERY", "3")
    get_settings.cache_clear()
    try:
        if command == "worker":
            worker_database().dispose()
        elif command == "users":
            with cli_session():
                pass
        else:
            anchor = tmp_path / "secretariat.cert.pem"
            anchor.write_bytes(
                make_identity("CITES Secretariat (TEST)", kind="ec", size=256).cert_pem
            )
            monkeypatch.setenv("EPIX_REGISTRY_ANCHOR_PATH", str(anchor))
            monkeypatch.setenv("EPIX_REGISTRY_SOURCE_URL", "http://127.0.0.1:9/v1/registry")
            get_settings.cache_clear()
            followed = CliRunner().invoke(cli, ["registry", "follow", "--once"])
            assert "EPIX-REG-009" in followed.output  # the source is unreachable: no copy yet
        fill(database, 3)
    finally:
        get_settings.cache_clear()
    node = node_identity(tmp_path / "data", "XA")
    with database.unit_of_work() as session:
        report = verify_chain(
            session, trusted_fingerprints=[certificate_fingerprint(node.cert_pem)]
        )
    assert report.ok
    assert (report.checkpoints_verified, report.checkpoints_pending) == (1, 0)


def test_deleting_the_oldest_events_up_to_a_signed_checkpoint_is_named(
    database: Database, node_signer: CheckpointSigner, policy: None
) -> None:
    """A signed checkpoint anchors the chain only where a recorded purge cut it: deleting the
    oldest events up to any signed checkpoint (one is signed every N events) is not a purge."""
    configure_audit(AuditPolicy(checkpoint_every=4, retention_years=5, signer=lambda: node_signer))
    fill(database, 9)
    trusted = [certificate_fingerprint(node_signer.cert_pem)]
    with database.unit_of_work() as session:
        session.execute(AuditEvent.__table__.delete().where(AuditEvent.sequence <= 4))
    with database.unit_of_work() as session:
        report = verify_chain(session, trusted_fingerprints=trusted)
    assert report.broken_at == 5
    assert [f.code for f in report.findings] == ["EPIX-AUDIT-001"]
    assert "no recorded purge" in report.findings[0].message


def test_successive_purges_keep_the_chain_verifiable(
    database: Database, node_signer: CheckpointSigner, no_auto_checkpoints: None
) -> None:
    fill(database, 6)
    trusted = [certificate_fingerprint(node_signer.cert_pem)]
    today = utcnow().date()
    for through in (2, 5):
        with database.unit_of_work() as session:
            session.execute(
                update(AuditEvent)
                .where(AuditEvent.sequence > through)
                .values(purge_after=date(2999, 1, 1))
            )
            session.execute(
                update(AuditEvent)
                .where(AuditEvent.sequence <= through)
                .values(purge_after=date(2000, 1, 1))
            )
        _rechain(database)
        assert purge(database, before=today, signer=node_signer).through_sequence == through
        with database.unit_of_work() as session:
            report = verify_chain(session, trusted_fingerprints=trusted)
        assert report.ok, report.findings
        assert report.first_sequence == through + 1


def _rechain(database: Database) -> None:
    """Recompute the hashes after a test edits purge dates (what a forger would have to do),
    from the genesis or, when the chain's start was purged, from its anchoring checkpoint."""
    with database.unit_of_work() as session:
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.sequence)).all()
        anchor = session.get(AuditCheckpoint, events[0].sequence - 1)
        previous = anchor.head_hash if anchor is not None else GENESIS_HASH
        for event in events:
            event.prev_hash = previous
            event.hash = compute_hash(event)
            previous = event.hash
        head = session.get(AuditChainHead, HEAD_ROW_ID)
        assert head is not None
        head.hash = previous


def _years_later(moment: datetime, years: int) -> datetime:
    """The moment ``years`` calendar years later; 29 February's falls on 1 March, since the
    28th would come before a full number of years has passed."""
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:
        return moment.replace(year=moment.year + years, month=3, day=1)


def test_nothing_is_purgeable_before_its_full_retention_has_passed() -> None:
    """A record may be purged from 00:00 UTC of its purge date. Before, an event late on
    28 February 2024 or on any day, and a permit valid through its last day, were due on the
    anniversary itself, hours before five years had passed; an event of 29 February 2024 was due
    on 28 February 2029."""
    day = date(2023, 12, 25)
    while day < date(2025, 3, 5):
        last_moment = datetime.combine(day, time(23, 59, 59, 999000), tzinfo=UTC)
        purge_from = datetime.combine(
            earliest_purge_date(day, retention_years=5, trade_year=1990), time(), tzinfo=UTC
        )
        assert purge_from >= _years_later(last_moment, 5), day
        expiry_purge = earliest_purge_date(
            date(2000, 1, 1), retention_years=5, permit_valid_until=day, trade_year=1990
        )
        assert datetime.combine(expiry_purge, time(), tzinfo=UTC) >= _years_later(last_moment, 5), (
            day
        )
        day += timedelta(days=1)


def test_a_purge_event_forged_without_the_node_key_does_not_anchor_a_cut(
    database: Database, node_signer: CheckpointSigner, policy: None
) -> None:
    """Anyone able to write the database could delete the oldest events up to any signed
    checkpoint (one every N events, however young) and append a purge event naming it, hashed
    and chained as record_event does: verification took that for a lawful purge."""
    configure_audit(AuditPolicy(checkpoint_every=4, retention_years=5, signer=lambda: node_signer))
    fill(database, 9)
    trusted = [certificate_fingerprint(node_signer.cert_pem)]
    with database.unit_of_work() as session:
        session.execute(AuditEvent.__table__.delete().where(AuditEvent.sequence <= 4))
        record_event(
            session,
            action=PURGE_ACTION,
            outcome="ok",
            detail={"through_sequence": 4, "count": 4, "before": utcnow().date().isoformat()},
        )
    with database.unit_of_work() as session:
        report = verify_chain(session, trusted_fingerprints=trusted)
    assert report.broken_at == 5
    assert "signed by the node" in report.findings[0].message


def test_epix_serve_signs_the_checkpoints_of_what_its_own_process_audits(tmp_path: Path) -> None:
    """``epix serve`` audits in its own process before (and, with --workers N, apart from) the
    web application: the demo's registry entries, the in-process outbox worker's deliveries,
    the follower's imports. It never configured the node's audit policy, so a checkpoint
    falling due there was left unsigned, and ``epix audit verify`` (which asks for a signed one
    at every multiple of EPIX_AUDIT_CHECKPOINT_EVERY) reported a normal node as altered."""
    every = {"EPIX_AUDIT_CHECKPOINT_EVERY": "2"}
    with running_node(tmp_path, "--demo", extra_env=every):
        pass
    verified = epix(tmp_path, "audit", "verify", extra_env=every)
    assert verified.returncode == 0, verified.stderr
