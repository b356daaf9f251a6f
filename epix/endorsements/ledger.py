"""The quantity ledger of a permit: permitted, reserved and used per line, and what remains.

A permit covers one consignment (Art. VI.5), seen at up to two borders: the exporting Party's
customs endorse it (box 14) and the importing Party's customs inspect it (Art. VI.6). Both
record the same specimens, so the two sides are counted separately rather than added up:

- export side: may record up to the permitted quantity, less its own active reservations;
- import side: may record up to what was exported (the permitted quantity when no export
  endorsement exists, e.g. the exporting Party is not on EPIX), less its own reservations;
- a side that has endorsed is closed; a cancelled, replaced, used or expired permit has
  nothing left.

Callers that change the ledger hold the permit row lock (``exchange.repository.lock_permit``)
while they read it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from epix.db.base import utcnow
from epix.endorsements.document import Side
from epix.endorsements.models import Endorsement, Reservation, ReservationStatus
from epix.exchange.models import Permit, PermitLine

ZERO = Decimal(0)
# Statuses after which nothing more may cross a border on the permit.
CLOSED_STATUSES = frozenset({"used", "cancelled", "replaced"})


def line_unit(line: PermitLine) -> str:
    """The line's unit; a line without one counts specimens (Rec. 20 ``NAR``)."""
    return (line.unit or "NAR").upper()


def is_expired(permit: Permit, at: datetime) -> bool:
    return permit.valid_until is not None and permit.valid_until < at


@dataclass(frozen=True, slots=True)
class LineBalance:
    line_id: str
    unit: str
    permitted: Decimal
    reserved: Decimal
    used: Decimal
    remaining: Decimal
    remaining_by_side: dict[Side, Decimal] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "line_id": self.line_id,
            "unit": self.unit,
            "permitted": _plain(self.permitted),
            "reserved": _plain(self.reserved),
            "used": _plain(self.used),
            "remaining": _plain(self.remaining),
            "remaining_by_side": {
                side.value: _plain(value) for side, value in self.remaining_by_side.items()
            },
        }


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


@dataclass(slots=True)
class PermitState:
    """What the ledger knows about one permit at one moment."""

    permit: Permit
    at: datetime
    endorsements: dict[Side, Endorsement]
    active_reservations: list[Reservation]

    def endorsed_totals(self, side: Side) -> dict[int, Decimal] | None:
        """Permit line row id → quantity ``side`` endorsed (None when it has not endorsed).

        One pass over the endorsement's lines; callers look lines up in the result instead of
        summing the endorsement again for each permit line (quadratic on large permits).
        """
        endorsement = self.endorsements.get(side)
        if endorsement is None:
            return None
        totals: dict[int, Decimal] = defaultdict(lambda: ZERO)
        for item in endorsement.lines:
            totals[item.permit_line_id] += item.quantity
        return totals

    def reserved(self, side: Side | None, exclude: Reservation | None = None) -> dict[int, Decimal]:
        totals: dict[int, Decimal] = defaultdict(lambda: ZERO)
        for reservation in self.active_reservations:
            if reservation is exclude or (side is not None and reservation.side != side):
                continue
            for item in reservation.lines:
                totals[item.permit_line_id] += item.quantity
        return totals

    def remaining_by_line(
        self, side: Side, exclude: Reservation | None = None
    ) -> dict[int, Decimal]:
        """Permit line row id → what ``side`` may still record on it (ignoring the permit's
        status): each endorsement and reservation is summed once, not once per line."""
        if side in self.endorsements:
            return {line.id: ZERO for line in self.permit.lines}
        exported = self.endorsed_totals(Side.EXPORT) if side is Side.IMPORT else None
        reserved = self.reserved(side, exclude)
        return {
            line.id: max(
                (line.permitted_quantity if exported is None else exported[line.id])
                - reserved[line.id],
                ZERO,
            )
            for line in self.permit.lines
        }

    def balances(self) -> list[LineBalance]:
        closed = self.permit.status in CLOSED_STATUSES or is_expired(self.permit, self.at)
        reserved_all = self.reserved(None)
        open_by_side = {side: self.remaining_by_line(side) for side in Side}
        endorsed = {side: self.endorsed_totals(side) for side in Side}
        imported_totals, exported_totals = endorsed[Side.IMPORT], endorsed[Side.EXPORT]
        result = []
        for line in self.permit.lines:
            by_side = {side: ZERO if closed else open_by_side[side][line.id] for side in Side}
            if Side.EXPORT in self.endorsements:
                remaining = by_side[Side.IMPORT]
            else:
                remaining = min(by_side.values())
            imported = None if imported_totals is None else imported_totals[line.id]
            exported = None if exported_totals is None else exported_totals[line.id]
            used = imported if imported is not None else (exported or ZERO)
            result.append(
                LineBalance(
                    line_id=line.line_id,
                    unit=line_unit(line),
                    permitted=line.permitted_quantity,
                    reserved=reserved_all[line.id],
                    used=used,
                    remaining=remaining,
                    remaining_by_side=by_side,
                )
            )
        return result


def load_state(session: Session, permit: Permit, at: datetime | None = None) -> PermitState:
    """The permit's endorsements and its reservations still holding quantities at ``at``."""
    at = at or utcnow()
    endorsements = session.scalars(
        select(Endorsement)
        .where(Endorsement.permit_id == permit.id)
        .execution_options(populate_existing=True)
    ).all()
    reservations = session.scalars(
        select(Reservation)
        .where(
            Reservation.permit_id == permit.id,
            Reservation.status == ReservationStatus.ACTIVE.value,
            Reservation.expires_at > at,
        )
        .order_by(Reservation.id)
        .execution_options(populate_existing=True)
    ).all()
    return PermitState(
        permit=permit,
        at=at,
        endorsements={Side(e.side): e for e in endorsements},
        active_reservations=list(reservations),
    )


def ledger(session: Session, permit: Permit, at: datetime | None = None) -> list[LineBalance]:
    """Per line: permitted, reserved (active holds), used (the consignment) and remaining."""
    return load_state(session, permit, at).balances()


def remaining_quantities(session: Session, permit: Permit) -> dict[str, Decimal]:
    """Line id → the most a customs officer could still record for the consignment.

    Zero for every line once the permit is used, cancelled, replaced or expired. Called by
    the permit lookup so that customs see one answer.
    """
    return {balance.line_id: balance.remaining for balance in ledger(session, permit)}
