"""Concurrent customs requests on one permit never together exceed it (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select

from epix.db import Database
from epix.endorsements import service
from epix.endorsements.document import Side
from epix.endorsements.ledger import ledger
from epix.endorsements.models import Endorsement
from epix.endorsements.service import Signer
from epix.errors import EpixError
from epix.exchange.models import Permit
from tests.endorsements.conftest import border, customs, lines, store_permit

THREADS = 6


def run_together(work: Callable[[int], None]) -> list[str]:
    """Start ``work`` on several threads at once; the outcome code (or "ok") of each."""
    barrier = threading.Barrier(THREADS)
    outcomes: list[str] = []
    guard = threading.Lock()

    def runner(index: int) -> None:
        barrier.wait()
        try:
            work(index)
            outcome = "ok"
        except EpixError as exc:
            outcome = exc.findings[0].code
        with guard:
            outcomes.append(outcome)

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return sorted(outcomes)


def test_concurrent_endorsements_of_one_permit_admit_exactly_one(
    database: Database, signer: Signer
) -> None:
    permit = store_permit(database)

    def endorse(index: int) -> None:
        with database.unit_of_work() as session:
            service.endorse(
                session,
                issuing_party="XA",
                number=permit.number,
                side=Side.IMPORT,
                details=border(),
                lines=lines(("1", "10", "PCS")),
                declaration_reference=f"MRN-{index}",
                signer=signer,
                signed_by="authority",
                actor=customs("XB"),
            )

    outcomes = run_together(endorse)
    assert outcomes.count("ok") == 1
    assert set(outcomes) == {"ok", "EPIX-STATE-005"}
    with database.unit_of_work() as session:
        assert len(session.scalars(select(Endorsement)).all()) == 1


def test_concurrent_reservations_never_hold_more_than_permitted(database: Database) -> None:
    permit = store_permit(database)  # line 1: 10 PCS

    def reserve(index: int) -> None:
        with database.unit_of_work() as session:
            service.reserve(
                session,
                issuing_party="XA",
                number=permit.number,
                side=Side.IMPORT,
                declaration_reference=f"MRN-{index}",
                lines=lines(("1", "4", "PCS")),
                ttl=timedelta(hours=1),
                actor=customs("XB"),
            )

    outcomes = run_together(reserve)
    assert outcomes.count("ok") == 2  # 4 + 4 fit in 10; a third 4 would not
    assert set(outcomes) == {"ok", "EPIX-QTY-001"}
    with database.unit_of_work() as session:
        row = session.get(Permit, permit.id)
        assert row is not None
        line = next(b for b in ledger(session, row) if b.line_id == "1")
    assert (line.reserved, line.remaining) == (Decimal(8), Decimal(2))
