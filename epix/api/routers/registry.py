"""The key registry over HTTP: the Secretariat-signed document, read views, Secretariat changes.

``GET /v1/registry`` is public (followers fetch it) and supports ``If-None-Match``; a follower
presenting its ``peer_node`` API key is recorded, so the Secretariat sees who has fetched an
anchor announcement (``GET /v1/registry/followers``). The JSON views say the same as the
document. Changes need the Secretariat role and are audited by the registry service in the
same transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from epix.api.deps import DatabaseDep, RequestContextDep, RowId, SettingsDep
from epix.api.openapi import refusals
from epix.api.security import CurrentPrincipal, presented_key_principal, require_roles
from epix.audit.service import record_event
from epix.auth.principal import Principal, Role
from epix.auth.scoping import ensure_role
from epix.db import Database
from epix.db.base import utcnow
from epix.errors import EpixError
from epix.registry import repository, service
from epix.registry.anchors import follower_report
from epix.registry.document import current_publication, etag_of, publish
from epix.registry.models import (
    RegistryAuthority,
    RegistryCertificate,
    RegistryParty,
)
from epix.settings import Settings

router = APIRouter(prefix="/v1/registry", tags=["registry"])
REGISTRY_MEDIA_TYPE = "application/xml"


def _secretariat(
    principal: CurrentPrincipal, database: DatabaseDep, context: RequestContextDep
) -> Principal:
    """Admit only the Secretariat; anyone else's change attempt is audited before the 403.

    Refusing here (not in the service) keeps authorisation ahead of body validation.
    """
    if not principal.has(Role.SECRETARIAT):
        with database.unit_of_work() as session:
            record_event(
                session,
                action="registry.change",
                outcome="EPIX-AUTH-004",
                actor=principal,
                request=context,
                detail={"method": context.method, "path": context.path},
            )
    ensure_role(principal, Role.SECRETARIAT)
    return principal


Secretariat = Annotated[Principal, Depends(_secretariat)]


def certificate_json(row: RegistryCertificate) -> dict[str, object]:
    return {
        "fingerprint": row.fingerprint,
        "authority_id": row.authority_id,
        "subject": row.subject,
        "not_before": row.not_before.isoformat(),
        "not_after": row.not_after.isoformat(),
        "roles": row.roles.split(),
        "added_by": row.added_by,
        "added_at": row.added_at.isoformat(),
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
        "revocation_reason": row.revocation_reason,
        "revoked_by": row.revoked_by,
        "pem": row.pem,
    }


def authority_json(row: RegistryAuthority) -> dict[str, object]:
    return {
        "id": row.id,
        "party": row.party_code,
        "kind": row.kind,
        "name": row.name,
        "contact": row.contact,
        "added_at": row.added_at.isoformat(),
        "certificates": [certificate_json(c) for c in row.certificates],
    }


def party_json(row: RegistryParty) -> dict[str, object]:
    return {
        "code": row.code,
        "name": row.name,
        "endpoint_url": row.endpoint_url,
        "added_at": row.added_at.isoformat(),
        "authorities": [authority_json(a) for a in row.authorities],
    }


def _signing_identity(settings: Settings) -> tuple[bytes, bytes] | None:
    """The Secretariat's key and certificate when this node publishes the registry."""
    key_path, cert_path = settings.registry_signing_key_path, settings.registry_signing_cert_path
    if not (key_path and cert_path):
        return None
    try:
        return key_path.read_bytes(), cert_path.read_bytes()
    except OSError as exc:
        raise EpixError.of(
            "EPIX-REG-009",
            f"The registry signing key or certificate cannot be read ({exc.strerror}).",
            "settings.registry_signing_key_path",
        ) from None


@dataclass(frozen=True, slots=True)
class _Served:
    """The document an answer names, and the successor its newest anchor announcement names
    (None on a node that does not publish: it records no fetches)."""

    content: bytes
    sha256: str
    version: int
    newest_anchor: str | None


def _served_document(
    database: Database, settings: Settings, context: RequestContextDep
) -> tuple[_Served, bool]:
    """The newest document and whether this node publishes it. Read on a snapshot (on SQLite
    no write lock); the write lock is taken only when a new version must be signed."""
    identity = _signing_identity(settings)
    validity = timedelta(hours=settings.registry_validity_hours)
    with database.read() as session:
        if identity is None:
            document = repository.latest_document(session)
        else:
            document = current_publication(session, identity[1], validity=validity)
        if document is not None:
            newest = repository.newest_announced_anchor(session) if identity else None
            served = _Served(document.content, document.sha256, document.version, newest)
            return served, identity is not None
    if identity is None:
        raise EpixError.of("EPIX-REG-009", "This node holds no registry document yet.", "/")
    try:
        with database.unit_of_work() as session:
            document = publish(session, *identity, validity=validity, request=context)
            newest = repository.newest_announced_anchor(session)
            return _Served(document.content, document.sha256, document.version, newest), True
    except ValueError as exc:  # an unreadable key, or one that is not the certificate's
        raise EpixError.of(
            "EPIX-REG-009",
            f"The registry cannot be signed with this node's registry signing key: {exc}",
            "settings.registry_signing_key_path",
        ) from None


@router.get(
    "",
    summary="The Secretariat-signed registry document",
    openapi_extra=refusals("EPIX-REG-009", "EPIX-REG-019"),
    response_class=Response,
)
def registry_document(
    request: Request,
    database: DatabaseDep,
    settings: SettingsDep,
    context: RequestContextDep,
    caller: Annotated[Principal | None, Depends(presented_key_principal)],
) -> Response:
    """The Secretariat-signed registry document, newest version (ETag; 304 on If-None-Match).

    No login needed. On the Secretariat's node (signing key configured) a changed registry, or
    one whose signed expiry is less than half of EPIX_REGISTRY_VALIDITY_HOURS away, is signed
    here the first time it is asked for; a follower serves the last good copy it verified.

    A follower node may identify itself with the API key this node issued to its Party (role
    peer_node; the follower keeps it in EPIX_PEER_API_KEYS under the Secretariat's code): the
    publishing node then records the fetch (GET /v1/registry/followers). A presented key that
    is refused is refused (401/403), never served as anonymous.
    """
    served, publishing = _served_document(database, settings, context)
    etag = etag_of(served.sha256)
    headers = {
        "ETag": etag,
        "Cache-Control": "no-cache",
        "X-EPIX-Registry-Version": str(served.version),
    }
    matches = {tag.strip() for tag in request.headers.get("if-none-match", "").split(",")}
    status = 304 if etag in matches or "*" in matches else 200
    if publishing and caller is not None and caller.has(Role.PEER_NODE):
        with database.unit_of_work() as session:  # one short upsert, after the document is read
            repository.record_follower_fetch(
                session,
                party=caller.party,
                status=status,
                version=served.version,
                sha256=served.sha256,
                anchor_fingerprint=served.newest_anchor,
                now=utcnow(),
            )
    if status == 304:
        return Response(status_code=304, headers=headers)
    return Response(content=served.content, media_type=REGISTRY_MEDIA_TYPE, headers=headers)


@router.get("/followers", summary="Which follower nodes fetched the registry")
def followers(
    _actor: Annotated[Principal, Depends(require_roles(Role.SECRETARIAT))], database: DatabaseDep
) -> dict[str, object]:
    """The Secretariat's view of an anchor rotation: for each Party whose node fetched the
    registry identifying itself (its peer_node key), the last fetch, the version it got, and
    whether that version carries the newest anchor announcement. Followers that fetch
    anonymously, or through a copy elsewhere, are not listed (Secretariat only)."""
    with database.read() as session:
        return follower_report(session).as_dict()


@router.get("/parties", summary="List the registry's Parties")
def list_parties(database: DatabaseDep) -> dict[str, object]:
    """Every Party with its authorities and certificates, and the registry version (no login
    needed: public keys)."""
    with database.unit_of_work() as session:
        return {
            "version": repository.current_version(session),
            "parties": [party_json(p) for p in repository.list_parties(session)],
        }


@router.get(
    "/parties/{code}",
    summary="One Party with its authorities and certificates",
    openapi_extra=refusals("EPIX-REG-001"),
)
def get_party(code: str, database: DatabaseDep) -> dict[str, object]:
    """One Party with its endpoint, authorities and their certificates."""
    with database.unit_of_work() as session:
        row = repository.get_party(session, code)
        if row is None:
            raise EpixError.of("EPIX-REG-001", f"Party {code} is not in the registry.", "code")
        return party_json(row)


@router.get("/certificates/expiring", summary="Certificates ending soon")
def expiring(
    database: DatabaseDep,
    within_days: Annotated[int, Query(ge=1, le=3660)] = service.EXPIRING_WITHIN_DAYS,
) -> dict[str, object]:
    """Unrevoked certificates ending within ``within_days``, with their 7/30/60-day bucket."""
    with database.unit_of_work() as session:
        found = service.expiring_certificates(session, within_days=within_days)
    return {"within_days": within_days, "certificates": [e.as_dict() for e in found]}


@router.get(
    "/certificates/{fingerprint}", summary="One certificate", openapi_extra=refusals("EPIX-REG-005")
)
def get_certificate(fingerprint: str, database: DatabaseDep) -> dict[str, object]:
    """One certificate: validity, roles, revocation and its Party."""
    with database.unit_of_work() as session:
        row = repository.get_certificate(session, service.certificate_fingerprint(fingerprint))
        if row is None:
            raise EpixError.of(
                "EPIX-REG-005", f"Certificate {fingerprint} is not in the registry.", "fingerprint"
            )
        return {**certificate_json(row), "party": row.authority.party_code}


class PartyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=2, max_length=2, examples=["XC"])
    name: str = Field(min_length=1, max_length=200, examples=["Demo Party XC"])
    endpoint_url: str | None = Field(
        default=None, max_length=2000, examples=["https://epix.xc.example.org"]
    )


class AuthorityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = Field(
        description="management_authority, customs, scientific_authority or node",
        examples=["management_authority"],
    )
    name: str = Field(min_length=1, max_length=200, examples=["XC Management Authority"])
    contact: str | None = Field(default=None, max_length=500, examples=["cites@xc.example.org"])


class CertificateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pem: str = Field(
        min_length=1,
        max_length=64 * 1024,
        examples=["-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n"],
    )
    roles: list[str] | None = Field(default=None, max_length=8, examples=[["customs"]])


class EndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2000, examples=["https://epix.xc.example.org"])


class RevocationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500, examples=["key compromise"])
    at: AwareDatetime | None = Field(
        default=None,
        description="When the revocation takes effect (default now). A revoked certificate "
        "may be revoked again only from an earlier time (EPIX-REG-006 otherwise).",
    )


@contextmanager
def _change(database: Database) -> Iterator[Session]:
    """One unit of work for a change; a refused change still commits its audit event."""
    with database.unit_of_work() as session:
        try:
            yield session
        except EpixError:
            session.commit()  # the service rolled the change back and audited the refusal
            raise


@router.post(
    "/parties",
    summary="Add a Party",
    openapi_extra=refusals("EPIX-AUTH-004", "EPIX-CODE-007", "EPIX-REG-010", "EPIX-REG-012"),
    status_code=201,
)
def add_party(
    body: PartyIn, actor: Secretariat, database: DatabaseDep, context: RequestContextDep
) -> dict[str, object]:
    """Add a Party (Secretariat only, audited), optionally with its node endpoint."""
    with _change(database) as session:
        row = service.add_party(
            session,
            code=body.code,
            name=body.name,
            endpoint=body.endpoint_url,
            actor=actor,
            request=context,
        )
        session.refresh(row)
        return party_json(row)


@router.post(
    "/parties/{code}/authorities",
    summary="Add an authority to a Party",
    openapi_extra=refusals(
        "EPIX-AUTH-004", "EPIX-CODE-007", "EPIX-REG-001", "EPIX-REG-010", "EPIX-REG-013"
    ),
    status_code=201,
)
def add_authority(
    code: str,
    body: AuthorityIn,
    actor: Secretariat,
    database: DatabaseDep,
    context: RequestContextDep,
) -> dict[str, object]:
    """Add an authority of a Party: its kind decides which roles its certificates sign for
    (Secretariat only, audited)."""
    with _change(database) as session:
        row = service.add_authority(
            session,
            party=code,
            kind=body.kind,
            name=body.name,
            contact=body.contact,
            actor=actor,
            request=context,
        )
        session.refresh(row)
        return authority_json(row)


@router.post(
    "/authorities/{authority_id}/certificates",
    summary="Register an authority's certificate",
    openapi_extra=refusals(
        "EPIX-AUTH-004", "EPIX-REG-002", "EPIX-REG-003", "EPIX-REG-004", "EPIX-REG-013"
    ),
    status_code=201,
)
def add_certificate(
    authority_id: RowId,
    body: CertificateIn,
    actor: Secretariat,
    database: DatabaseDep,
    context: RequestContextDep,
) -> dict[str, object]:
    """Register a PEM certificate for an authority; earlier ones stay valid until revoked, which
    allows rollover (Secretariat only, audited)."""
    with _change(database) as session:
        row = service.add_certificate(
            session,
            authority_id=authority_id,
            pem=body.pem.encode("utf-8"),
            roles=body.roles,
            actor=actor,
            request=context,
        )
        return certificate_json(row)


@router.put(
    "/parties/{code}/endpoint",
    summary="Publish a Party's node endpoint",
    openapi_extra=refusals("EPIX-AUTH-004", "EPIX-CODE-007", "EPIX-REG-001", "EPIX-REG-012"),
)
def set_endpoint(
    code: str,
    body: EndpointIn,
    actor: Secretariat,
    database: DatabaseDep,
    context: RequestContextDep,
) -> dict[str, object]:
    """Publish the base URL of a Party's node: https, or http on loopback only (Secretariat only,
    audited)."""
    with _change(database) as session:
        row = service.set_endpoint(session, party=code, url=body.url, actor=actor, request=context)
        return {"code": row.code, "endpoint_url": row.endpoint_url}


@router.delete(
    "/parties/{code}/endpoint",
    summary="Withdraw a Party's node endpoint",
    openapi_extra=refusals("EPIX-AUTH-004", "EPIX-CODE-007", "EPIX-REG-001"),
)
def withdraw_endpoint(
    code: str, actor: Secretariat, database: DatabaseDep, context: RequestContextDep
) -> dict[str, object]:
    """Remove a Party's node endpoint (Secretariat only, audited)."""
    with _change(database) as session:
        row = service.set_endpoint(session, party=code, url=None, actor=actor, request=context)
        return {"code": row.code, "endpoint_url": row.endpoint_url}


@router.post(
    "/certificates/{fingerprint}/revocation",
    summary="Revoke a certificate",
    openapi_extra=refusals("EPIX-AUTH-004", "EPIX-REG-005", "EPIX-REG-006"),
)
def revoke(
    fingerprint: str,
    body: RevocationIn,
    actor: Secretariat,
    database: DatabaseDep,
    context: RequestContextDep,
) -> dict[str, object]:
    """Revoke a certificate from ``at`` (default now): documents signed before stay valid, later
    ones are refused (Secretariat only, audited)."""
    with _change(database) as session:
        row = service.revoke_certificate(
            session,
            fingerprint=fingerprint,
            reason=body.reason,
            at=body.at,
            actor=actor,
            request=context,
        )
        return certificate_json(row)
