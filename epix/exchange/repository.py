"""Row access to stored permits that several services share."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session, lazyload

from epix.errors import EpixError
from epix.exchange.models import Permit

# A permit's lines load when first used, once the caller is known to be allowed to see it, not
# with its row: else a permit the caller may not see costs a query more than one that does not
# exist, and the time that takes tells it exists (EPIX-STATE-007 is one answer for both).
LINES_WHEN_USED = lazyload(Permit.lines)


def lock_permit(session: Session, issuing_party: str, number: str) -> Permit:
    """The permit row, locked until the transaction ends (status changes and the quantity
    ledger serialise on it), or ``EPIX-STATE-007``."""
    permit = lock_permits(session, issuing_party, (number,)).get(number)
    if permit is None:
        raise permit_not_found(issuing_party, number)
    return permit


def lock_permits(
    session: Session, issuing_party: str, numbers: Collection[str]
) -> dict[str, Permit]:
    """Permits of one issuer by number, each locked until the transaction ends; missing ones
    are left out. Rows are locked in id order, so two transactions locking the same pair (a
    replacement each way) wait for each other instead of deadlocking."""
    permits = session.scalars(
        select(Permit)
        .where(Permit.issuing_party == issuing_party, Permit.number.in_(list(numbers)))
        .order_by(Permit.id)
        .options(LINES_WHEN_USED)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {permit.number: permit for permit in permits}


def permit_not_found(issuing_party: str, number: str) -> EpixError:
    """The one answer for a permit that does not exist and for one the caller may not see
    (EPIX-STATE-007): word for word the same, so permit numbers cannot be probed."""
    return EpixError.of(
        "EPIX-STATE-007",
        f"No permit {number!r} issued by {issuing_party} is known here, or you may not see it.",
        f"/v1/permits/{issuing_party}/{number}",
    )
