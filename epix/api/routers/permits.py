"""Permit lookup by issuing Party and number, the signed XML, and status changes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from epix.api.deps import DatabaseDep, RequestContextDep, SettingsDep, audited_reading
from epix.api.openapi import refusals
from epix.api.security import CurrentPrincipal, require_roles
from epix.audit.context import RequestContext
from epix.auth.principal import Principal, Role
from epix.db import Database
from epix.exchange.lookup import lookup_permit, permit_bytes
from epix.exchange.node_identity import node_identity
from epix.exchange.status import CANCELLED, REPLACED, change_status

router = APIRouter(prefix="/v1/permits", tags=["permits"])
Issuer = Annotated[Principal, Depends(require_roles(Role.MANAGEMENT_AUTHORITY))]
Token = Annotated[
    str | None,
    Query(max_length=128, description="The issuer's per-permit security token, if it set one."),
]


class CancelRequest(BaseModel):
    reason: str | None = Field(
        default=None, max_length=2000, examples=["Issued in error: wrong importer."]
    )


class ReplaceRequest(BaseModel):
    replaced_by: str = Field(
        min_length=1, max_length=64, description="The new permit's number.", examples=["26XA0124"]
    )
    reason: str | None = Field(default=None, max_length=2000, examples=["Quantity corrected."])


class PermitLookup(BaseModel):
    """The lookup answer as /openapi.json documents it (the route returns the service's own
    JSON values unchanged; a test keeps the two in step)."""

    issuing_party: str
    number: str
    document_type: str = Field(description="Box 1: E export, I import, R re-export, O other.")
    recipient_party: str = Field(description="The Party the issuer sent the permit to.")
    exporter_party: str = Field(
        description="The Party whose customs give the export endorsement: the issuer, or the "
        "recipient of an import permit (type I)."
    )
    importer_party: str = Field(
        description="The Party whose customs inspect the consignment on import: the "
        "recipient, or the issuer of an import permit (type I)."
    )
    status: str = Field(description="issued, endorsed, used, cancelled, replaced or expired.")
    status_reason: str | None
    status_changed_at: str | None
    replaced_by: dict[str, str] | None = Field(description="issuing_party and number.")
    valid_from: str | None
    valid_until: str | None
    sha256: str = Field(description="SHA-256 of the signed document, as received.")
    xml_url: str
    message_id: str
    received_at: str
    signature: dict[str, Any] = Field(description="The signature verdict and its signer.")
    lines: list[dict[str, Any]] = Field(
        description="Per line: permitted, reserved, used and remaining quantities."
    )
    compliance: list[Any] = Field(description="Compliance warnings found on submission.")
    permit: dict[str, Any] | None = Field(
        description="The permit's boxes, read from the signed bytes (null when the signature "
        "did not verify)."
    )
    receipts: list[dict[str, Any]]
    history: list[dict[str, Any]]


def _status_answer(change: Any) -> dict[str, Any]:
    return {
        "issuing_party": change.permit.issuing_party,
        "number": change.permit.number,
        "status": change.status,
        "notified": list(change.notified),
        "status_document": change.document.decode("utf-8"),
    }


@router.get(
    "/{party}/{number:path}/xml",
    summary="A permit's signed document, byte-exact",
    openapi_extra=refusals("EPIX-STATE-007"),
    response_class=Response,
    responses={
        200: {"description": "The signed permit, byte-exact.", "content": {"application/xml": {}}}
    },
)
def permit_xml(
    party: str,
    number: str,
    principal: CurrentPrincipal,
    database: DatabaseDep,
    context: RequestContextDep,
    token: Token = None,
) -> Response:
    """The exact signed bytes the node received (their SHA-256 is in the header)."""
    with audited_reading(database) as session:
        permit, data = permit_bytes(
            session,
            party=party.upper(),
            number=number,
            token=token,
            principal=principal,
            request=context,
        )
    return Response(
        data,
        media_type="application/xml",
        headers={"X-EPIX-Document-SHA256": permit.signed_sha256},
    )


@router.post(
    "/{party}/{number:path}/cancel",
    summary="Cancel a permit",
    openapi_extra=refusals("EPIX-AUTH-005", "EPIX-STATE-007", "EPIX-STATE-008"),
)
def cancel_permit(
    party: str,
    number: str,
    payload: CancelRequest,
    principal: Issuer,
    database: DatabaseDep,
    settings: SettingsDep,
    context: RequestContextDep,
) -> dict[str, Any]:
    """The issuing MA cancels a permit; every Party that received or looked it up is told."""
    with database.unit_of_work() as session:
        change = change_status(
            session,
            party=party.upper(),
            number=number,
            status=CANCELLED,
            principal=principal,
            settings=settings,
            identity=node_identity(settings.data_dir, settings.node_party),
            reason=payload.reason,
            request=context,
        )
        return _status_answer(change)


@router.post(
    "/{party}/{number:path}/replace",
    summary="Replace a permit by another",
    openapi_extra=refusals("EPIX-AUTH-005", "EPIX-STATE-007", "EPIX-STATE-008", "EPIX-STATE-010"),
)
def replace_permit(
    party: str,
    number: str,
    payload: ReplaceRequest,
    principal: Issuer,
    database: DatabaseDep,
    settings: SettingsDep,
    context: RequestContextDep,
) -> dict[str, Any]:
    """The issuing MA replaces a permit by another it already submitted."""
    with database.unit_of_work() as session:
        change = change_status(
            session,
            party=party.upper(),
            number=number,
            status=REPLACED,
            principal=principal,
            settings=settings,
            identity=node_identity(settings.data_dir, settings.node_party),
            reason=payload.reason,
            replacement_number=payload.replaced_by,
            request=context,
        )
        return _status_answer(change)


@router.get(
    "/{party}/{number:path}",
    summary="Look a permit up: status, lines, signature",
    openapi_extra=refusals("EPIX-STATE-007"),
    response_model=None,
    responses={200: {"model": PermitLookup, "description": "The permit as customs see it."}},
)
def get_permit(
    party: str,
    number: str,
    request: Request,
    principal: CurrentPrincipal,
    database: DatabaseDep,
    context: RequestContextDep,
    token: Token = None,
) -> dict[str, Any]:
    """Everything customs need: permit, signature verdict and signer, status, validity,
    per-line permitted and remaining quantities, compliance flags, receipts and history.
    A permit that does not exist and one you may not see give the same EPIX-STATE-007."""
    return look_up_permit(
        database,
        context,
        principal,
        party=party,
        number=number,
        token=token,
        base_path=request.url.path,
    )


def look_up_permit(
    database: Database,
    context: RequestContext,
    principal: Principal,
    *,
    party: str,
    number: str,
    token: str | None,
    base_path: str,
) -> dict[str, Any]:
    """A permit's lookup answer, for the API and the check page alike: the same Party scoping
    and audit. A refusal is raised once its audit event is committed. ``base_path``: the
    permit's API address, from which the answer's links are made."""
    with audited_reading(database) as session:
        return lookup_permit(
            session,
            party=party.upper(),
            number=number,
            token=token,
            principal=principal,
            request=context,
            base_path=base_path,
        )
