"""The ledger of a large permit sums each endorsement and reservation once, not once per line.

A permit may hold thousands of lines (a 5 MB body holds ~5,000) and customs may hold many
reservations of up to 1,000 lines on it; summing every reservation again for each permit line
made one lookup of a 4,000-line permit with four such reservations cost 15 s of CPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from epix.db import utcnow
from epix.endorsements.document import Side
from epix.endorsements.ledger import PermitState
from epix.endorsements.service import LineInput, check_lines

LINES = 300


class CountingLines(list[Any]):
    """An endorsement's or reservation's lines that count how often they are walked."""

    walks = 0

    def __iter__(self) -> Iterator[Any]:
        self.walks += 1
        return super().__iter__()


def item(line_pk: int, quantity: str) -> SimpleNamespace:
    return SimpleNamespace(permit_line_id=line_pk, quantity=Decimal(quantity))


def large_state() -> tuple[PermitState, list[CountingLines]]:
    permit_lines = [
        SimpleNamespace(id=pk, line_id=str(pk), permitted_quantity=Decimal(10), unit="NAR")
        for pk in range(1, LINES + 1)
    ]
    permit = SimpleNamespace(
        status="issued", valid_until=utcnow() + timedelta(days=30), lines=permit_lines
    )
    exported = CountingLines(item(pk, "5") for pk in range(1, LINES + 1))
    held = [CountingLines(item(pk, "1") for pk in range(1, LINES + 1)) for _ in range(3)]
    state = PermitState(
        permit=permit,  # type: ignore[arg-type]
        at=utcnow(),
        endorsements={Side.EXPORT: SimpleNamespace(lines=exported)},  # type: ignore[dict-item]
        active_reservations=[
            SimpleNamespace(side=Side.IMPORT.value, lines=lines)  # type: ignore[misc]
            for lines in held
        ],
    )
    return state, [exported, *held]


def test_balances_walk_each_endorsement_and_reservation_a_bounded_number_of_times() -> None:
    state, walked = large_state()
    balances = state.balances()
    assert len(balances) == LINES
    assert {
        (b.permitted, b.reserved, b.used, b.remaining, tuple(b.remaining_by_side.items()))
        for b in balances
    } == {
        (
            Decimal(10),
            Decimal(3),
            Decimal(5),
            Decimal(2),
            ((Side.EXPORT, Decimal(0)), (Side.IMPORT, Decimal(2))),
        )
    }
    assert max(lines.walks for lines in walked) <= 4  # was once per permit line and side


def test_checking_many_lines_walks_each_reservation_a_bounded_number_of_times() -> None:
    state, walked = large_state()
    asked = [LineInput(str(pk), "2", "NAR") for pk in range(1, LINES + 1)]
    checked = check_lines(state, Side.IMPORT, asked)
    assert [quantity for _, quantity, _ in checked] == [Decimal(2)] * LINES
    assert max(lines.walks for lines in walked) <= 2  # was once per asked line
