"""Two transactions at once on the permit and inbox rows, interleaved by hand on a real database.

Each test keeps a first unit of work open at the critical point and runs the competing one in
a thread. On PostgreSQL the second really runs meanwhile (row locks decide); on SQLite it waits
for the first one's write turn, so the same test checks the serialised outcome there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from epix.auth import service as users
from epix.auth.principal import Principal
from epix.exchange.lookup import lookup_permit
from epix.exchange.models import PermitWatcher
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
