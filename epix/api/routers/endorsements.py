"""Customs at the border: reserve quantities, confirm or release, endorse, read the ledger.

Routes are plain ``def`` (signing runs in the thread pool) and open their own unit of work, so
the endorsement, its outbox row and its audit event are committed before the answer is sent.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr
from sqlalchemy.orm import Session

from epix.api.deps import (
    DatabaseDep,
    RawBody,
    RequestContextDep,
    SettingsDep,
    audited_reading,
)
from epix.api.idempotency import IdempotencyKeyHeader, keyed_request, mark_replayed
from epix.api.openapi import error_codes, refusals
from epix.api.security import require_roles
from epix.audit.context import RequestContext
from epix.auth.principal import Principal, Role
from epix.db import Database
from epix.db.base import utcnow
from epix.endorsements import service
from epix.endorsements.document import MAX_LINES, Side
from epix.endorsements.idempotency import Answer, Create, IdempotencyKey, Operation, answer_once
from epix.endorsements.ledger import ledger
from epix.errors import EpixError
from epix.exchange.node_identity import node_identity
from epix.exchange.status import status_announcer
from epix.registry.trust import RegistryTrustStore
from epix.settings import Settings
from epix.signatures import sign_document

router = APIRouter(prefix="/v1/permits", tags=["endorsements"])
Customs = Annotated[Principal, Depends(require_roles(Role.CUSTOMS))]
# The refusals the customs routes share, for /openapi.json.
IDEMPOTENCY = ("EPIX-REQ-012", "EPIX-REQ-013", "EPIX-REQ-014")
QUANTITY = tuple(f"EPIX-QTY-{n:03}" for n in (1, 2, 3, 4, 7, 12))
BORDER = ("EPIX-QTY-006", "EPIX-QTY-009", "EPIX-QTY-010")
PERMIT_USABLE = tuple(f"EPIX-STATE-{n:03}" for n in range(1, 8))  # expired ... no such permit
LedgerReader = Annotated[Principal, Depends(require_roles(Role.CUSTOMS, Role.MANAGEMENT_AUTHORITY))]
PERMIT_PATH = "/{party}/{number:path}"
XML_TYPES = frozenset({"application/xml", "text/xml"})


class LineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line_id: str = Field(min_length=1, max_length=64)
    # Checked by the ledger (EPIX-QTY-004), so "abc" or -1 get the quantity code, not a
    # generic validation error.
    quantity: StrictStr | StrictInt | StrictFloat
    unit: str = Field(min_length=1, max_length=16)

    def as_input(self) -> service.LineInput:
        return service.LineInput(self.line_id, self.quantity, self.unit)


class ReservationIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "side": "export",
                    "declaration_reference": "24NL0000000000001",
                    "lines": [{"line_id": "1", "quantity": "150", "unit": "NAR"}],
                }
            ]
        },
    )

    side: Literal["export", "import"]
    declaration_reference: str = Field(min_length=1, max_length=200)
    lines: list[LineIn] = Field(min_length=1, max_length=MAX_LINES)
    ttl_seconds: int | None = Field(default=None, gt=0)


class BorderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    port: str = Field(max_length=32, description="UN/LOCODE, e.g. NLRTM or 'NL RTM'.")
    date: date
    officer: str = Field(min_length=1, max_length=200)
    transport_document: str = Field(
        min_length=1, max_length=200, description="Bill of lading or air waybill (box 15)."
    )

    def details(self) -> service.BorderDetails:
        return service.BorderDetails(self.port, self.date, self.officer, self.transport_document)


class ConfirmIn(BorderIn):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "port": "NLRTM",
                    "date": "2026-12-07",
                    "officer": "J. Jansen",
                    "transport_document": "MAEU123456789",
                }
            ]
        }
    )

    lines: list[LineIn] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_LINES,
        description="Actual quantities; the reserved ones when left out.",
    )


class EndorsementIn(BorderIn):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "side": "export",
                    "port": "NLRTM",
                    "date": "2026-12-07",
                    "officer": "J. Jansen",
                    "transport_document": "MAEU123456789",
                    "lines": [{"line_id": "1", "quantity": "12.5", "unit": "KGM"}],
                }
            ]
        }
    )

    side: Literal["export", "import"]
    declaration_reference: str | None = Field(default=None, min_length=1, max_length=200)
    lines: list[LineIn] = Field(min_length=1, max_length=MAX_LINES)


def _node_signer(settings: Settings) -> service.Signer:
    """The node signs for the customs officer it authenticated (EPIX-DSIG-1)."""
    identity = node_identity(settings.data_dir, settings.node_party)

    def sign(xml: bytes) -> bytes:
        return sign_document(xml, identity.key_pem, identity.cert_pem)

    return sign


def _ttl(settings: Settings, requested: int | None) -> timedelta:
    seconds = requested or settings.endorsement_reservation_ttl_seconds
    if seconds > settings.endorsement_reservation_max_ttl_seconds:
        raise EpixError.of(
            "EPIX-REQ-004",
            f"A reservation may last at most {settings.endorsement_reservation_max_ttl_seconds}"
            " seconds.",
            "ttl_seconds",
        )
    return timedelta(seconds=seconds)


def _answer_once(
    session: Session,
    key: IdempotencyKey | None,
    operation: Operation,
    *,
    party: str,
    number: str,
    actor: Principal,
    settings: Settings,
    context: RequestContext,
    create: Create,
) -> Answer:
    return answer_once(
        session,
        key,
        operation=operation,
        actor=actor,
        issuing_party=party.upper(),
        number=number,
        lifetime=timedelta(hours=settings.idempotency_key_hours),
        request=context,
        create=create,
    )


@router.get(
    PERMIT_PATH + "/ledger",
    summary="A permit's quantity ledger",
    openapi_extra=refusals("EPIX-STATE-007"),
)
def get_ledger(
    party: str, number: str, actor: LedgerReader, database: DatabaseDep, context: RequestContextDep
) -> dict[str, object]:
    """Per line: permitted, reserved, used and what remains (per side and overall)."""
    with audited_reading(database) as session:
        permit = service.permit_read(
            session, party=party.upper(), number=number, actor=actor, request=context, read="ledger"
        )
        at = utcnow()
        return {
            "permit": {
                "issuing_party": permit.issuing_party,
                "number": permit.number,
                "status": permit.status,
                "sha256": permit.signed_sha256,
            },
            "at": at.isoformat(),
            "lines": [balance.as_dict() for balance in ledger(session, permit, at)],
        }


@router.post(
    PERMIT_PATH + "/reservations",
    summary="Reserve quantities on a permit",
    openapi_extra=refusals(*IDEMPOTENCY, *QUANTITY, *PERMIT_USABLE),
    status_code=201,
)
def create_reservation(
    party: str,
    number: str,
    body: ReservationIn,
    actor: Customs,
    database: DatabaseDep,
    settings: SettingsDep,
    context: RequestContextDep,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKeyHeader,
) -> dict[str, object]:
    """Hold quantities for a customs declaration (like CSW-CERTEX) until confirm or release."""
    ttl = _ttl(settings, body.ttl_seconds)
    with database.unit_of_work() as session:

        def reserve() -> tuple[str, dict[str, object]]:
            reservation = service.reserve(
                session,
                issuing_party=party.upper(),
                number=number,
                side=Side(body.side),
                declaration_reference=body.declaration_reference,
                lines=[line.as_input() for line in body.lines],
                ttl=ttl,
                actor=actor,
                request=context,
            )
            described = service.describe_reservation(session, reservation, reservation.created_at)
            return reservation.reservation_id, described

        answer = _answer_once(
            session,
            keyed_request(idempotency_key, request, body),
            Operation.RESERVE,
            party=party,
            number=number,
            actor=actor,
            settings=settings,
            context=context,
            create=reserve,
        )
    # Percent-encoded: a permit number is any text, a header only Latin-1 (and this one is
    # sent after the reservation was committed).
    response.headers["Location"] = quote(
        f"/v1/permits/{party.upper()}/{number}/reservations/{answer.body['reservation_id']}"
    )
    mark_replayed(response, answer)
    return answer.body


@router.post(
    PERMIT_PATH + "/reservations/{reservation_id}/release",
    summary="Release a reservation",
    openapi_extra=refusals("EPIX-STATE-007", "EPIX-QTY-005", "EPIX-QTY-008"),
)
def release_reservation(
    party: str,
    number: str,
    reservation_id: str,
    actor: Customs,
    database: DatabaseDep,
    context: RequestContextDep,
) -> dict[str, object]:
    """Give the held quantities back."""
    with database.unit_of_work() as session:
        reservation = service.release(
            session,
            issuing_party=party.upper(),
            number=number,
            reservation_id=reservation_id,
            actor=actor,
            request=context,
        )
        return service.describe_reservation(session, reservation, utcnow())


@router.post(
    PERMIT_PATH + "/reservations/{reservation_id}/confirm",
    summary="Confirm a reservation as an endorsement",
    openapi_extra=refusals(*IDEMPOTENCY, *BORDER, "EPIX-QTY-005", "EPIX-QTY-008", *PERMIT_USABLE),
    status_code=201,
)
def confirm_reservation(
    party: str,
    number: str,
    reservation_id: str,
    body: ConfirmIn,
    actor: Customs,
    database: DatabaseDep,
    settings: SettingsDep,
    context: RequestContextDep,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKeyHeader,
) -> dict[str, object]:
    """Turn the reservation into the signed endorsement and send it to the issuing Party."""
    signer = _node_signer(settings)
    with database.unit_of_work() as session:

        def confirm() -> tuple[str, dict[str, object]]:
            result = service.confirm(
                session,
                issuing_party=party.upper(),
                number=number,
                reservation_id=reservation_id,
                details=body.details(),
                lines=[line.as_input() for line in body.lines] if body.lines else None,
                signer=signer,
                signed_by="node",
                actor=actor,
                request=context,
                announce=status_announcer(settings),
                give_up_seconds=settings.outbox_give_up_seconds,
            )
            endorsement = result.endorsement
            return endorsement.endorsement_id, service.describe_endorsement(session, endorsement)

        answer = _answer_once(
            session,
            keyed_request(idempotency_key, request, body),
            Operation.CONFIRM,
            party=party,
            number=number,
            actor=actor,
            settings=settings,
            context=context,
            create=confirm,
        )
    mark_replayed(response, answer)
    return answer.body


@router.post(
    PERMIT_PATH + "/endorsements",
    summary="Endorse a permit at the border",
    openapi_extra=refusals(*IDEMPOTENCY, *QUANTITY, *BORDER, *PERMIT_USABLE),
    status_code=201,
)
def create_endorsement(
    party: str,
    number: str,
    body: EndorsementIn,
    actor: Customs,
    database: DatabaseDep,
    settings: SettingsDep,
    context: RequestContextDep,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKeyHeader,
) -> dict[str, object]:
    """Endorse the consignment (export, box 14) or record the import inspection (Art. VI.6)."""
    answer = endorse_once(
        database,
        settings,
        context,
        actor,
        party=party,
        number=number,
        body=body,
        key=keyed_request(idempotency_key, request, body),
    )
    mark_replayed(response, answer)
    return answer.body


def endorse_once(
    database: Database,
    settings: Settings,
    context: RequestContext,
    actor: Principal,
    *,
    party: str,
    number: str,
    body: EndorsementIn,
    key: IdempotencyKey | None,
) -> Answer:
    """The endorsement, signed by the node and committed with its outbox row and audit event,
    for the API and the page without script alike: the same rules and the same
    ``Idempotency-Key`` record (``key``: a request sent again gets the first answer)."""
    signer = _node_signer(settings)
    with database.unit_of_work() as session:

        def endorse() -> tuple[str, dict[str, object]]:
            result = service.endorse(
                session,
                issuing_party=party.upper(),
                number=number,
                side=Side(body.side),
                details=body.details(),
                lines=[line.as_input() for line in body.lines],
                declaration_reference=body.declaration_reference,
                signer=signer,
                signed_by="node",
                actor=actor,
                request=context,
                announce=status_announcer(settings),
                give_up_seconds=settings.outbox_give_up_seconds,
            )
            endorsement = result.endorsement
            return endorsement.endorsement_id, service.describe_endorsement(session, endorsement)

        return _answer_once(
            session,
            key,
            Operation.ENDORSE,
            party=party,
            number=number,
            actor=actor,
            settings=settings,
            context=context,
            create=endorse,
        )


@router.post(
    PERMIT_PATH + "/endorsements/signed",
    summary="Record an endorsement customs signed themselves",
    status_code=201,
    openapi_extra={
        **refusals(
            "EPIX-REQ-002",
            "EPIX-REQ-003",
            *error_codes("EPIX-XML-", "EPIX-SIG-"),
            "EPIX-AUTH-005",
            "EPIX-STATE-009",
            *QUANTITY,
            *BORDER,
            *PERMIT_USABLE,
        ),
        "requestBody": {
            "required": True,
            "content": {"application/xml": {"schema": {"type": "string"}}},
            "description": "An Endorsement ({urn:epix:endorsement:1}) signed EPIX-DSIG-1 with "
            "a customs certificate registered for the caller's Party.",
        },
    },
)
def submit_signed_endorsement(
    party: str,
    number: str,
    body: RawBody,
    request: Request,
    actor: Customs,
    database: DatabaseDep,
    settings: SettingsDep,
    context: RequestContextDep,
) -> dict[str, object]:
    """Record an endorsement signed with the customs authority's own key; forwarded as sent."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in XML_TYPES:
        raise EpixError.of(
            "EPIX-REQ-002",
            f"Send the signed endorsement as application/xml, not {content_type or 'nothing'}.",
            "Content-Type",
        )
    with database.unit_of_work() as session:
        result = service.record_signed(
            session,
            issuing_party=party.upper(),
            number=number,
            data=body,
            trust=RegistryTrustStore(session),
            actor=actor,
            request=context,
            max_bytes=settings.max_body_bytes,
            max_depth=settings.max_xml_depth,
            announce=status_announcer(settings),
            give_up_seconds=settings.outbox_give_up_seconds,
        )
        return service.describe_endorsement(session, result.endorsement)


@router.get(
    PERMIT_PATH + "/endorsements",
    summary="List a permit's endorsements",
    openapi_extra=refusals("EPIX-STATE-007"),
)
def list_endorsements(
    party: str, number: str, actor: LedgerReader, database: DatabaseDep, context: RequestContextDep
) -> list[dict[str, object]]:
    """The permit's endorsements (export and import), for its Parties."""
    with audited_reading(database) as session:
        permit = service.permit_read(
            session,
            party=party.upper(),
            number=number,
            actor=actor,
            request=context,
            read="endorsements",
        )
        return [
            service.describe_endorsement(session, endorsement)
            for endorsement in service.endorsements_of(session, permit)
        ]


@router.get(
    PERMIT_PATH + "/endorsements/{endorsement_id}/xml",
    summary="An endorsement's signed document",
    openapi_extra=refusals("EPIX-STATE-007", "EPIX-REQ-005"),
    response_class=Response,
    responses={200: {"description": "The signed endorsement.", "content": {"application/xml": {}}}},
)
def endorsement_xml(
    party: str,
    number: str,
    endorsement_id: str,
    actor: LedgerReader,
    database: DatabaseDep,
    context: RequestContextDep,
) -> Response:
    """The signed endorsement document, byte-exact as it was forwarded."""
    with audited_reading(database) as session:
        endorsement = service.endorsement_read(
            session,
            party=party.upper(),
            number=number,
            endorsement_id=endorsement_id,
            actor=actor,
            request=context,
        )
        return Response(
            endorsement.document,
            media_type="application/xml",
            headers={"X-EPIX-Document-SHA256": endorsement.document_sha256},
        )
