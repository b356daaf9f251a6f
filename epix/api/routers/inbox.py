"""A Party's inbox: pull a leased page, fetch one entry byte-exact, acknowledge it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from epix.api.deps import ROW_ID_MAX, DatabaseDep, RequestContextDep, RowId, SettingsDep
from epix.api.openapi import refusals
from epix.api.security import CurrentPrincipal
from epix.audit.service import record_event
from epix.errors import EpixError
from epix.exchange import inbox
from epix.exchange.lookup import watch_message
from epix.exchange.models import InboxEntry
from epix.exchange.service import sha256_hex

router = APIRouter(prefix="/v1", tags=["inbox"])


def _cursor(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10 or int(raw) > ROW_ID_MAX:
        raise EpixError.of(
            "EPIX-REQ-008", "The cursor is the next_cursor of an earlier page.", "cursor"
        )
    return int(raw)


def _summary(entry: InboxEntry) -> dict[str, Any]:
    message = entry.message
    return {
        "id": entry.id,
        "kind": entry.kind,
        "subject": entry.subject,
        "content_type": entry.content_type,
        "created_at": entry.created_at.isoformat(),
        "pull_count": entry.pull_count,
        "message_id": message.message_id if message else None,
        "from": message.sender_party if message else None,
        "document_type": message.document_type if message else None,
        "conversation_id": message.conversation_id if message else None,
        "sha256": message.sha256 if message else None,
        "url": f"/v1/inbox/{entry.id}",
    }


@router.get(
    "/inbox", summary="Pull (lease) the next inbox entries", openapi_extra=refusals("EPIX-REQ-008")
)
def pull_inbox(
    principal: CurrentPrincipal,
    database: DatabaseDep,
    settings: SettingsDep,
    context: RequestContextDep,
    cursor: Annotated[
        str | None,
        Query(
            description="Continue after this entry (exclusive); omit to start at the oldest "
            "unacknowledged entry, which is where expired leases reappear. An entry never "
            "pulled comes whatever the cursor: one that committed after a later one was "
            "pulled (concurrent submissions) arrives on a later page with a lower id."
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, description="Page size; capped by the node.")] = 100,
) -> dict[str, Any]:
    """Lease the next unacknowledged entries of the caller's Party (stable order by id)."""
    after = _cursor(cursor)
    with database.unit_of_work() as session:
        page = inbox.pull(
            session,
            party=principal.party,
            cursor=after,
            limit=min(limit, settings.inbox_page_max),
            lease_seconds=settings.inbox_lease_seconds,
            skip_locked=not database.is_sqlite,
        )
        record_event(
            session,
            action="inbox.pull",
            outcome="ok",
            actor=principal,
            party=principal.party,
            request=context,
            detail={"entries": [entry.id for entry in page.entries], "lease": page.lease_id},
        )
        return {
            "entries": [_summary(entry) for entry in page.entries],
            "lease_id": page.lease_id,
            "lease_expires_at": page.lease_expires_at.isoformat(),
            "next_cursor": str(page.next_cursor) if page.next_cursor is not None else None,
        }


_ENTRY_BYTES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The entry's bytes, exactly as received or written; `ETag` is their "
        "SHA-256. HEAD answers the same headers without the bytes.",
        "content": {"application/xml": {}},
    }
}


@router.get(
    "/inbox/{entry_id}",
    summary="Fetch one inbox entry's signed document",
    openapi_extra=refusals("EPIX-REQ-005"),
    response_class=Response,
    responses=_ENTRY_BYTES,
)
@router.head(
    "/inbox/{entry_id}",
    summary="Inbox entry's headers",
    openapi_extra=refusals("EPIX-REQ-005"),
    response_class=Response,
    responses=_ENTRY_BYTES,
    operation_id="head_inbox_entry",
)
def fetch_entry(
    entry_id: RowId,
    principal: CurrentPrincipal,
    database: DatabaseDep,
    context: RequestContextDep,
    request: Request,
) -> Response:
    """One entry of the caller's inbox, byte-exact (the signed document as received)."""
    with database.unit_of_work() as session:
        entry = inbox.get_entry(session, party=principal.party, entry_id=entry_id)
        data = inbox.entry_bytes(entry)
        digest = entry.message.sha256 if entry.message is not None else sha256_hex(data)
        # Entries never change, so the digest of their bytes is a strong validator.
        headers = {"X-EPIX-Inbox-Kind": entry.kind, "ETag": f'"{digest}"'}
        if entry.message is not None:
            headers |= {
                "X-EPIX-Message-Id": entry.message.message_id,
                "X-EPIX-From": entry.message.sender_party,
                "X-EPIX-Document-Type": entry.message.document_type,
                "X-EPIX-Document-SHA256": entry.message.sha256,
            }
            watch_message(session, entry.message, principal.party)
        record_event(
            session,
            action="inbox.fetch",
            outcome="ok",
            actor=principal,
            party=principal.party,
            message_id=entry.message.message_id if entry.message else None,
            request=context,
            payload=data,
            detail={"entry": entry.id},
        )
        media_type = entry.content_type or "application/octet-stream"
    if request.method == "HEAD":  # the length of the bytes a GET sends, and no body
        return Response(media_type=media_type, headers=headers | {"Content-Length": str(len(data))})
    return Response(data, media_type=media_type, headers=headers)


@router.post(
    "/inbox/{entry_id}/ack",
    summary="Acknowledge an inbox entry",
    openapi_extra=refusals("EPIX-REQ-005", "EPIX-MSG-005"),
)
def acknowledge_entry(
    entry_id: RowId,
    principal: CurrentPrincipal,
    database: DatabaseDep,
    context: RequestContextDep,
    lease: Annotated[str | None, Query(description="The lease_id of the pull.")] = None,
) -> dict[str, Any]:
    """Mark an entry processed; it will not be pulled again."""
    with database.unit_of_work() as session:
        entry = inbox.acknowledge(
            session,
            party=principal.party,
            entry_id=entry_id,
            username=principal.username,
            lease_id=lease,
        )
        record_event(
            session,
            action="inbox.ack",
            outcome="ok",
            actor=principal,
            party=principal.party,
            message_id=entry.message.message_id if entry.message else None,
            request=context,
            detail={"entry": entry.id},
        )
        assert entry.acknowledged_at is not None
        return {"id": entry.id, "acknowledged_at": entry.acknowledged_at.isoformat()}
