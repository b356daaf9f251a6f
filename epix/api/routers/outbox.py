"""The outbox as its users see it: senders see their deliveries (and why one failed); node
admins may resend a failed one. A hub's node admins (its operator's staff) see every Party's
rows; on a Party node its admins see what their own Party sent, as they manage only its users
(``epix outbox list|resend`` is not limited)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from sqlalchemy.orm import Session

from epix.api.deps import ROW_ID_MAX, DatabaseDep, RequestContextDep, RowId, SettingsDep
from epix.api.openapi import refusals
from epix.api.routers.auth import administered_party, party_refusals_audited
from epix.api.security import CurrentPrincipal, require_roles
from epix.audit.context import url_for_audit
from epix.audit.service import record_event
from epix.auth.principal import Principal, Role
from epix.auth.scoping import ensure_administers_node
from epix.delivery import outbox
from epix.delivery.models import OutboxMessage, OutboxState
from epix.errors import EpixError
from epix.settings import Settings

router = APIRouter(prefix="/v1/outbox", tags=["outbox"])
NodeAdmin = Annotated[Principal, Depends(require_roles(Role.NODE_ADMIN))]


class OutboxRowOut(BaseModel):
    id: int
    kind: str
    message_id: str
    sender_party: str
    destination_party: str
    target_url: str | None
    state: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    give_up_at: datetime
    delivered_at: datetime | None
    failed_at: datetime | None
    last_error_code: str | None
    last_error: str | None
    response_status: int | None
    has_receipt: bool
    resent_count: int

    @classmethod
    def of(cls, row: OutboxMessage) -> OutboxRowOut:
        return cls(
            id=row.id,
            kind=row.kind,
            message_id=row.message_id,
            sender_party=row.sender_party,
            destination_party=row.destination_party,
            # As the audit trail keeps it: receivers put tokens in user information and query.
            target_url=url_for_audit(row.target_url) if row.target_url else None,
            state=row.state,
            attempts=row.attempts,
            created_at=row.created_at,
            next_attempt_at=row.next_attempt_at,
            give_up_at=outbox.gives_up_at(row),
            delivered_at=row.delivered_at,
            failed_at=row.failed_at,
            last_error_code=row.last_error_code,
            last_error=row.last_error,
            response_status=row.response_status,
            has_receipt=row.receipt is not None,
            resent_count=row.resent_count,
        )


def _visible_party(principal: Principal, settings: Settings) -> str | None:
    """Whose rows the caller sees: a hub's node admins every Party's (None), everyone else only
    what their own Party sent, a Party node's admins included."""
    if principal.has(Role.NODE_ADMIN) and administered_party(settings) is None:
        return None
    return principal.party


def _visible_row(
    session: Session, row_id: int, principal: Principal, settings: Settings
) -> OutboxMessage:
    """The row, if the caller may see it; one they may not see is answered as one that does not
    exist (EPIX-DLV-009), with the EPIX-AUTH-005 it stands for as its cause (audited where
    ``party_refusals_audited`` wraps the call)."""
    row = outbox.get(session, row_id)
    party = _visible_party(principal, settings)
    if party is not None and row.sender_party != party:
        refusal = EpixError.of(
            "EPIX-AUTH-005",
            f"Outbox row {row_id} was sent by {row.sender_party or 'the node'}; you act for "
            f"{party}.",
            f"outbox/{row_id}",
        )
        raise outbox.no_such_row(row_id) from refusal
    return row


@router.get("", summary="List outbox deliveries", response_model=list[OutboxRowOut])
def list_outbox(
    principal: CurrentPrincipal,
    database: DatabaseDep,
    settings: SettingsDep,
    state: Annotated[OutboxState | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: Annotated[
        int | None, Query(ge=1, le=ROW_ID_MAX, description="Rows with a smaller id.")
    ] = None,
) -> list[OutboxRowOut]:
    """Deliveries newest first; ``state=failed`` lists what gave up and why. Each caller sees
    what their own Party sent; a hub's node admins see every Party's."""
    with database.unit_of_work() as session:
        rows = outbox.list_rows(
            session,
            state=state,
            sender_party=_visible_party(principal, settings),
            limit=limit,
            after_id=before,
        )
        return [OutboxRowOut.of(row) for row in rows]


@router.get(
    "/{row_id}",
    summary="One outbox delivery",
    openapi_extra=refusals("EPIX-DLV-009"),
    response_model=OutboxRowOut,
)
def get_outbox_row(
    row_id: RowId, principal: CurrentPrincipal, database: DatabaseDep, settings: SettingsDep
) -> OutboxRowOut:
    """One delivery with its attempts and the reason of its last failure; other Parties' rows
    only for a hub's node admins."""
    with database.unit_of_work() as session:
        return OutboxRowOut.of(_visible_row(session, row_id, principal, settings))


@router.post(
    "/{row_id}/resend",
    summary="Resend a failed delivery",
    openapi_extra=refusals("EPIX-AUTH-005", "EPIX-DLV-009", "EPIX-DLV-008"),
    response_model=OutboxRowOut,
)
def resend(
    row_id: RowId,
    principal: NodeAdmin,
    request: Request,
    database: DatabaseDep,
    settings: SettingsDep,
    context: RequestContextDep,
) -> OutboxRowOut:
    """Queue a failed delivery again, with a fresh give-up age (node admins: on a Party node,
    only its own Party's, and what that Party sent; another's row is answered as one that does
    not exist, audited)."""
    with party_refusals_audited(request, database, principal), database.unit_of_work() as session:
        ensure_administers_node(principal, administered_party(settings), f"outbox/{row_id}")
        _visible_row(session, row_id, principal, settings)
        row = outbox.resend(session, row_id, give_up_seconds=settings.outbox_give_up_seconds)
        record_event(
            session,
            action="outbox.resent",
            outcome="ok",
            actor=principal,
            party=row.sender_party or None,
            message_id=row.message_id,
            request=context,
            detail={"outbox_id": row.id, "to": row.destination_party, "kind": row.kind},
        )
        return OutboxRowOut.of(row)
