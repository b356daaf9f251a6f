"""Submit a signed permit and track it: ``POST /v1/messages``, ``GET /v1/messages/{id}``.

The same route takes signed endorsements and status changes from another Party's node (its
``peer_node`` API key here) or authority (``X-EPIX-Document-Type: endorsement`` / ``status``).

Two ways to send the same thing: the exact signed document as the body (``application/xml``)
with the envelope in ``X-EPIX-*`` headers, or an EPIX envelope document
(``application/vnd.epix.envelope+xml``) carrying the signed bytes in base64. Either way the
node stores the signed document's bytes exactly and answers with a receipt signed by the node.
"""

from __future__ import annotations

import base64
from typing import Any

from anyio import CapacityLimiter, to_thread
from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.exc import SQLAlchemyError

from epix.api.deps import DatabaseDep, RequestContextDep, audited_reading, request_context
from epix.api.metrics import Metrics
from epix.api.openapi import (
    AUTHENTICATION_CODES,
    ROLE_CODES,
    SESSION_CODES,
    error_codes,
    refusals,
)
from epix.api.problems import problem_response
from epix.api.security import CurrentPrincipal, get_current_principal, record_denied
from epix.audit.context import RequestContext
from epix.auth.principal import Principal, Role
from epix.auth.scoping import ensure_role
from epix.db import Database
from epix.db.trouble import database_trouble
from epix.errors import ERROR_TABLE, EpixError, Finding
from epix.exchange.envelope import ensure_single_headers, envelope_from_headers, open_envelope
from epix.exchange.incoming import SENDER_ROLES, receive
from epix.exchange.node_identity import node_identity
from epix.exchange.service import SubmissionResult, submit
from epix.exchange.tracking import track
from epix.settings import Settings

router = APIRouter(prefix="/v1", tags=["messages"])
XML_TYPES = frozenset({"application/xml", "text/xml"})
ENVELOPE_TYPE = "application/vnd.epix.envelope+xml"
RECEIPT_TYPE = "application/vnd.epix.receipt+xml"
SUBMITTER_ROLES = (Role.MANAGEMENT_AUTHORITY, Role.CUSTOMS, Role.PEER_NODE)
# Who may send each document type: the authority that signs it, or its Party's node.
PERMIT_SENDERS = (Role.MANAGEMENT_AUTHORITY, Role.PEER_NODE)


_SUBMIT_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Replay of an already accepted message id with the same bytes: the "
        "original signed receipt.",
        "content": {RECEIPT_TYPE: {}},
    },
    201: {
        "description": "Accepted (status accepted or accepted_with_warnings): the signed "
        "receipt ({urn:epix:receipt:1}Receipt, EPIX-DSIG-1) is the body; headers "
        "X-EPIX-Receipt-Status and X-EPIX-Document-SHA256 repeat its key facts.",
        "content": {RECEIPT_TYPE: {}},
    },
}
# A permit, or a peer's endorsement or status change, can fail any check of the pipeline.
_SUBMIT_REFUSALS = (
    *AUTHENTICATION_CODES,
    *SESSION_CODES,
    *ROLE_CODES,
    "EPIX-REQ-002",
    "EPIX-REQ-003",
    "EPIX-REQ-004",  # an envelope header missing, malformed or repeated
    "EPIX-REQ-015",  # a transfer coding other than chunked
    *error_codes("EPIX-XML-", "EPIX-SCHEMA-", "EPIX-CODE-", "EPIX-RULE-", "EPIX-SIG-"),
    *error_codes("EPIX-MSG-", "EPIX-REG-009", "EPIX-STATE-", "EPIX-QTY-"),
)


@router.post(
    "/messages",
    status_code=201,
    responses=_SUBMIT_DOC,
    response_class=Response,
    summary="Submit a signed permit (or a peer's endorsement or status change)",
    openapi_extra={
        **refusals(*_SUBMIT_REFUSALS),
        "parameters": [
            {"name": name, "in": "header", "required": required, "schema": {"type": "string"}}
            for name, required in (
                ("X-EPIX-Message-Id", True),
                ("X-EPIX-From", True),
                ("X-EPIX-To", True),
                ("X-EPIX-Document-Type", False),
                ("X-EPIX-Conversation-Id", False),
                ("X-EPIX-Security-Token", False),
            )
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/xml": {"schema": {"type": "string", "format": "binary"}},
                ENVELOPE_TYPE: {"schema": {"type": "string", "format": "binary"}},
            },
        },
    },
)
async def submit_message(request: Request) -> Response:
    """Submit a signed permit for a destination Party, or hand over a signed endorsement or
    status change from another Party's node; the answer is a signed receipt.

    A refusal is problem+json; when the pipeline ran, its body also has `receipt` (base64 of
    the signed rejection receipt) and `receipt_status`."""
    # The hot path of a node, so no FastAPI dependencies: authentication (a database read)
    # runs in the same worker-thread hop as the pipeline instead of a thread hop of its own,
    # in the same order as the dependencies would (body, authentication, role, pipeline). So an
    # unauthenticated request also waits for its turn; refusing it then costs ~0.1 ms.
    body = await request.body()
    settings: Settings = request.app.state.settings
    database: Database = request.app.state.database
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    headers = dict(request.headers.items())
    header_names = request.headers.keys()
    context = request_context(request, headers)
    metrics: Metrics = request.app.state.metrics

    def run() -> Response:
        try:
            principal = get_current_principal(request, database)
            try:
                ensure_role(principal, *SUBMITTER_ROLES)
            except EpixError as refusal:
                record_denied(request, database, principal, refusal)
                raise
            ensure_single_headers(header_names)
            result, response = _submit(
                content_type, headers, body, principal, settings, database, context
            )
        except EpixError as exc:
            metrics.count_submission("refused", exc.findings)
            raise
        except SQLAlchemyError as exc:  # answered by the problem handlers; an outage is counted
            trouble = database_trouble(exc)
            if trouble is not None:
                outage = Finding(trouble.code, ERROR_TABLE[trouble.code].meaning)
                metrics.count_submission("refused", [outage])
            raise
        metrics.count_submission(result.status, () if result.accepted else result.findings)
        return response

    # CPU-bound work runs in a worker thread, at most EPIX_PIPELINE_CONCURRENCY at once and the
    # rest queued in arrival order in the event loop: with one GIL, 32 threads parsing and
    # verifying at once only slowed the thread holding the database write lock.
    limiter: CapacityLimiter = request.app.state.pipeline_limiter
    return await to_thread.run_sync(run, limiter=limiter)


def _submit(
    content_type: str,
    request_headers: dict[str, str],
    body: bytes,
    principal: Principal,
    settings: Settings,
    database: Database,
    context: RequestContext,
) -> tuple[SubmissionResult, Response]:
    """From content type to the HTTP answer: envelope, role, pipeline, signed receipt."""
    if content_type in XML_TYPES:
        envelope = envelope_from_headers(request_headers)
        document = body
    elif content_type == ENVELOPE_TYPE:
        envelope, document = open_envelope(
            body, max_bytes=settings.max_body_bytes, max_depth=settings.max_xml_depth
        )
    else:
        raise EpixError.of(
            "EPIX-REQ-002",
            f"Send the signed document as application/xml (envelope in X-EPIX-* headers) or "
            f"an envelope as {ENVELOPE_TYPE}; got {content_type or 'no content type'}.",
            "Content-Type",
        )
    ensure_role(principal, *SENDER_ROLES.get(envelope.document_type, PERMIT_SENDERS))
    pipeline = submit if envelope.document_type == "permit" else receive
    result = pipeline(
        database,
        envelope=envelope,
        body=document,
        principal=principal,
        settings=settings,
        identity=node_identity(settings.data_dir, settings.node_party),
        request=context,
    )
    headers = {
        "X-EPIX-Receipt-Status": result.status,
        "X-EPIX-Document-SHA256": result.sha256,
        "X-EPIX-Message-Id": envelope.message_id,
    }
    if not result.accepted:
        return result, problem_response(
            list(result.findings),
            result.http_status,
            headers=headers,
            extra={
                "receipt_status": result.status,
                "receipt": base64.b64encode(result.receipt).decode("ascii"),
                "sha256": result.sha256,
            },
        )
    headers["Location"] = f"/v1/messages/{envelope.message_id}"
    return result, Response(
        result.receipt, status_code=result.http_status, media_type=RECEIPT_TYPE, headers=headers
    )


@router.get(
    "/messages/{message_id}",
    summary="Track a submitted message",
    openapi_extra=refusals("EPIX-REQ-005"),
)
def get_message(
    message_id: str, principal: CurrentPrincipal, database: DatabaseDep, context: RequestContextDep
) -> dict[str, Any]:
    """Tracking for the sender: delivery state (pending, delivered, acknowledged, failed)
    and the node's receipts."""
    with audited_reading(database) as session:
        return track(session, message_id=message_id, principal=principal, request=context)
