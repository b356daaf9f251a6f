"""Two transactions at once on the permit and inbox rows, interleaved by hand on a real database.

Each test keeps a first unit of work open at the critical point and runs the competing one in
a thread. On PostgreSQL the second really runs meanwhile (row locks decide); on SQLite it waits
for the first one's write turn, so the same test checks the serialised outcome there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from epix.audit.models import AuditEvent
from epix.auth import service as users
from epix.auth.principal import Principal
from epix.db import Database
from epix.db.base import utcnow
from epix.errors import EpixError
from epix.exchange import inbox
from epix.exchange.lookup import lookup_permit
from epix.exchange.models import InboxEntry, Permit, PermitWatcher
from epix.exchange.node_identity import node_identity
from epix.exchange.notifications import notify
from epix.exchange.status import CANCELLED, REPLACED, change_status
from tests.exchange.conftest import Node, submit

MA = "management_authority"
# How long the first transaction stays open while the second one runs or waits for it.
OVERLAP_SECONDS = 1.0


class Competitor:
    """A unit of work run in its own thread; its result or exception is kept for the test."""

    def __init__(self, work: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(work,))
        self._thread.start()
        self._thread.join(OVERLAP_SECONDS)  # done on PostgreSQL; waiting for its turn on SQLite

    def _run(self, work: Callable[[], Any]) -> None:
        try:
            self.result = work()
        except BaseException as exc:  # surfaced by outcome()
            self.error = exc

    def outcome(self) -> Any:
        """Wait for the thread; its result, or its exception raised here."""
        self._thread.join(30)
        assert not self._thread.is_alive()
        if self.error is not None:
            raise self.error
        return self.result


def principal(node: Node, party: str, role: str) -> Principal:
    username = next(u.username for u in node.demo.users if u.party == party and u.role == role)
    with node.database.unit_of_work() as session:
        return users.principal_of(users.get_user(session, username))


def pull_xb(database: Database, session: Session, cursor: int | None) -> inbox.InboxPage:
    """Lease up to ten of XB's entries after ``cursor`` in ``session``."""
    return inbox.pull(
        session,
        party="XB",
        cursor=cursor,
        limit=10,
        lease_seconds=600,
        skip_locked=not database.is_sqlite,
    )


def pull(database: Database, cursor: int | None) -> inbox.InboxPage:
    """The same in a unit of work of its own."""
    with database.unit_of_work() as session:
        return pull_xb(database, session, cursor)


@pytest.mark.anyio
async def test_two_lookups_by_one_party_at_once_both_answer(
    client: httpx.AsyncClient, node: Node
) -> None:
    """The first lookup by a Party makes it a watcher; two of its people looking the permit
    up at the same moment both found no watcher row and both inserted one: the second
    transaction hit the unique constraint, a 500 on PostgreSQL."""
    await submit(client, node, "XA-RACE-LOOK")
    with node.database.unit_of_work() as session:  # not yet a watcher, unlike XB (recipient)
        officer = users.principal_of(users.get_user(session, "cites-secretariat"))

    def look_up() -> str:
        with node.database.unit_of_work() as session:
            view = lookup_permit(
                session,
                party="XA",
                number="XA-RACE-LOOK",
                token=None,
                principal=officer,
                request=None,
                base_path="/v1/permits/XA/XA-RACE-LOOK",
            )
            return str(view["status"])

    with node.database.unit_of_work() as first:
        assert (
            lookup_permit(
                first,
                party="XA",
                number="XA-RACE-LOOK",
                token=None,
                principal=officer,
                request=None,
                base_path="/v1/permits/XA/XA-RACE-LOOK",
            )["status"]
            == "issued"
        )
        first.flush()
        second = Competitor(look_up)
    assert second.outcome() == "issued"
    with node.database.unit_of_work() as session:
        watchers = select(func.count()).select_from(PermitWatcher)
        assert session.scalar(watchers.where(PermitWatcher.party == officer.party)) == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("first", "second", "after"),
    [
        pytest.param(
            ("B", CANCELLED, None),
            ("A", REPLACED, "B"),
            {"A": "issued", "B": CANCELLED},
            id="replacement-cancelled-meanwhile",
        ),
        pytest.param(
            ("A", REPLACED, "B"),
            ("B", REPLACED, "A"),
            {"A": REPLACED, "B": "issued"},
            id="crossed-replacements",
        ),
    ],
)
async def test_a_replacement_changed_meanwhile_is_refused(
    client: httpx.AsyncClient,
    node: Node,
    first: tuple[str, str, str | None],
    second: tuple[str, str, str | None],
    after: dict[str, str],
) -> None:
    """Replacing A by B while B is being cancelled: the replacement checked that B was still
    issued without locking it, then (on PostgreSQL) waited only for B's foreign-key lock and
    committed after the cancellation, leaving A replaced by a cancelled permit and nothing
    valid for the consignment. It must lock B before checking it, and be refused. Crossed
    replacements (A by B, B by A) lock the pair in the same order: the second waits, is
    refused, and neither deadlocks."""
    for name in ("A", "B"):
        await submit(client, node, f"XA-RACE-{name}")
    issuer = principal(node, "XA", MA)
    identity = node_identity(node.settings.data_dir, node.settings.node_party)

    def change(session: Session, name: str, status: str, replacing: str | None) -> str:
        return change_status(
            session,
            party="XA",
            number=f"XA-RACE-{name}",
            status=status,
            principal=issuer,
            settings=node.settings,
            identity=identity,
            replacement_number=f"XA-RACE-{replacing}" if replacing else None,
        ).status

    def change_second() -> str:
        with node.database.unit_of_work() as session:
            return change(session, *second)

    with node.database.unit_of_work() as session:
        assert change(session, *first) == first[1]
        competitor = Competitor(change_second)
    with pytest.raises(EpixError) as refused:
        competitor.outcome()
    assert refused.value.findings[0].code == "EPIX-STATE-010"
    with node.database.unit_of_work() as session:
        statuses = dict(
            session.execute(
                select(Permit.number, Permit.status).where(Permit.number.like("XA-RACE-%"))
            ).all()
        )
        changes = session.scalars(
            select(AuditEvent.action).where(
                AuditEvent.action.in_(["permit.cancel", "permit.replace"])
            )
        ).all()
    assert statuses == {f"XA-RACE-{name}": status for name, status in after.items()}
    assert changes == [f"permit.{'cancel' if first[1] == CANCELLED else 'replace'}"]


def test_an_entry_committed_late_behind_the_cursor_is_still_pulled(database: Database) -> None:
    """Inbox ids come from a sequence when the row is inserted, but rows become visible when
    their transaction commits: on PostgreSQL entry N+1 can be pulled while entry N is still
    uncommitted. A puller that then follows ``next_cursor`` (N+1) must still get entry N."""

    def insert(subject: str) -> None:
        with database.unit_of_work() as session:
            notify(session, party="XB", kind="test", subject=subject, body=subject)

    with database.unit_of_work() as slow:
        notify(slow, party="XB", kind="test", subject="early", body="early")
        slow.flush()  # its id is taken now; the row commits after the next one
        later = Competitor(lambda: insert("late"))
        puller = Competitor(lambda: pull(database, None))
    later.outcome()
    page = puller.outcome()
    pulled = {entry.subject: entry.id for entry in page.entries}
    cursors = [page.next_cursor]
    while page.entries:
        page = pull(database, cursors[-1])
        pulled |= {entry.subject: entry.id for entry in page.entries}
        cursors.append(page.next_cursor)
    assert sorted(pulled) == ["early", "late"] and pulled["early"] < pulled["late"]
    assert cursors[-1] == pulled["late"]  # taking the late entry did not move the cursor back


def test_an_ack_under_a_lease_taken_meanwhile_is_refused(database: Database) -> None:
    """Puller A's lease ran out and puller B is taking the entry: A's ack read the entry
    unlocked, saw its own expired lease, waited for B's row lock and then acknowledged the entry
    B had just leased (PostgreSQL). The ack must check the lease it waited for: EPIX-MSG-005."""
    with database.unit_of_work() as session:
        notify(session, party="XB", kind="test", subject="fenced", body="fenced")

    [entry] = pull(database, None).entries  # puller A
    with database.unit_of_work() as session:
        session.execute(update(InboxEntry).values(lease_expires_at=utcnow() - timedelta(seconds=1)))

    def acknowledge_as_a() -> None:
        with database.unit_of_work() as session:
            inbox.acknowledge(
                session, party="XB", entry_id=entry.id, username="a", lease_id=entry.lease_owner
            )

    with database.unit_of_work() as session:  # puller B, still committing
        taken = pull_xb(database, session, None)
        assert [e.id for e in taken.entries] == [entry.id]
        late_ack = Competitor(acknowledge_as_a)
    with pytest.raises(EpixError) as refused:
        late_ack.outcome()
    assert refused.value.findings[0].code == "EPIX-MSG-005"
    with database.unit_of_work() as session:
        assert session.get(InboxEntry, entry.id).acknowledged_at is None  # type: ignore[union-attr]
