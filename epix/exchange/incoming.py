"""Endorsements and status changes arriving from another Party's node (or its customs system).

``POST /v1/messages`` takes them beside permits, through a pipeline of the same shape: sender
checks → size cap and hardened parse → schema → signature against the registry (endorsements:
the endorsing Party's ``customs`` or ``node`` key; status changes: the sending Party's
``management_authority`` or ``node`` key) → one transaction storing the exact bytes, their
SHA-256, the receipt, the inbox entry (or the onward outbox row), the effect on this node's copy
of the permit and the audit event → a signed receipt. The same (sender, message id) with the
same bytes returns the original receipt; with other bytes it is refused.

Only documents of a Party that is not hosted here come this way: a hosted Party's endorsement
or cancellation is made through this node's own endorsement and status routes, where the ledger
lives. The effect on the permit (if this node knows it) goes through the same checks as a local
endorsement; when those refuse, the signed document is still kept and delivered, and the audit
event says why the ledger did not take it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lxml import etree
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from epix.audit.context import RequestContext
from epix.audit.service import record_event
from epix.auth.principal import Principal, Role
from epix.auth.scoping import ensure_role
from epix.db import Database
from epix.db.trouble import database_trouble
from epix.delivery import outbox
from epix.endorsements import service as endorsements
from epix.endorsements.document import (
    EndorsementDocument,
    Side,
    check_schema,
    read_endorsement,
)
from epix.errors import EpixError, Finding, Severity
from epix.exchange.envelope import Envelope
from epix.exchange.models import Permit, Receipt
from epix.exchange.node_identity import NODE_ROLE, NodeIdentity
from epix.exchange.receipts import outcome_status
from epix.exchange.service import (
    Arrival,
    StorageUnavailable,
    SubmissionResult,
    audit_replay,
    check_parties,
    is_hosted,
    record_replay,
    reject,
    replay,
    replay_or_check_destination,
    route_message,
    seen_message,
    store_message,
)
from epix.exchange.status import StatusAnnouncer, apply_received
from epix.registry.roles import CUSTOMS, MANAGEMENT_AUTHORITY
from epix.registry.trust import RegistryTrustStore
from epix.settings import Settings
from epix.signatures.trust import StaticTrustStore, TrustedCertificate
from epix.signatures.verify import Verdict, verify_document
from epix.xml import load_schema, parse_xml
from epix.xml.namespaces import EPIX_ENDORSEMENT, EPIX_STATUS

ENDORSEMENT = "endorsement"
STATUS = "status"
ACTIONS = {ENDORSEMENT: "endorsement.receive", STATUS: "status.receive"}
# Who may hand such a document to this node: the Party's node, or the authority itself.
SENDER_ROLES: dict[str, tuple[Role, ...]] = {
    ENDORSEMENT: (Role.PEER_NODE, Role.CUSTOMS),
    STATUS: (Role.PEER_NODE, Role.MANAGEMENT_AUTHORITY),
}
# Which registered keys of the sending Party may have signed it.
SIGNING_ROLES: dict[str, tuple[str, ...]] = {
    ENDORSEMENT: (CUSTOMS, NODE_ROLE),
    STATUS: (MANAGEMENT_AUTHORITY, NODE_ROLE),
}
_ROOTS = {
    ENDORSEMENT: f"{{{EPIX_ENDORSEMENT}}}Endorsement",
    STATUS: f"{{{EPIX_STATUS}}}StatusChange",
}
STATUS_SCHEMA = "epix/status.xsd"
_ISSUER_ONLY = frozenset({"cancelled", "replaced"})


@dataclass(frozen=True, slots=True)
class PermitReference:
    issuing_party: str
    number: str
    sha256: str


@dataclass(frozen=True, slots=True)
class StatusDocument:
    """The business content of a verified status change."""

    permit: PermitReference
    status: str
    reason: str | None
    replaced_by: PermitReference | None


@dataclass(frozen=True, slots=True)
class Verified:
    """A document whose signature verified, read only from what was signed."""

    verdict: Verdict
    signer: TrustedCertificate
    endorsement: EndorsementDocument | None = None
    status: StatusDocument | None = None

    @property
    def permit(self) -> PermitReference:
        if self.endorsement is not None:
            e = self.endorsement
            return PermitReference(e.issuing_party, e.permit_number, e.permit_sha256)
        assert self.status is not None
        return self.status.permit


class _EitherRole:
    """Registry certificates of a Party under any of several roles, answered as one role."""

    def __init__(self, store: StaticTrustStore, roles: Sequence[str]) -> None:
        self._store = store
        self._roles = tuple(roles)

    def candidates(self, party: str, role: str) -> Sequence[TrustedCertificate]:
        return [c for each in self._roles for c in self._store.candidates(party, each)]

    def owner_of(self, fingerprint: str) -> TrustedCertificate | None:
        return self._store.owner_of(fingerprint)


def check_sender(envelope: Envelope, principal: Principal, settings: Settings) -> None:
    """The caller sends for its own Party, to another one, and that Party is not hosted here."""
    ensure_role(principal, *SENDER_ROLES[envelope.document_type])
    check_parties(envelope, principal, settings)
    if is_hosted(envelope.sender, settings):
        route = (
            "/v1/permits/{party}/{number}/endorsements"
            if envelope.document_type == ENDORSEMENT
            else "/v1/permits/{party}/{number}/cancel or /replace"
        )
        raise EpixError.of(
            "EPIX-MSG-004",
            f"{envelope.sender} is hosted on this node, where its ledger lives: record the "
            f"{envelope.document_type} through {route}, not as a message.",
            "X-EPIX-From",
        )


def check_document(body: bytes, envelope: Envelope, settings: Settings) -> etree._Element:
    """Size cap, hardened parse, the expected root and its schema: no database, no keys."""
    root = parse_xml(body, max_bytes=settings.max_body_bytes, max_depth=settings.max_xml_depth)
    expected = _ROOTS[envelope.document_type]
    if root.tag != expected:
        raise EpixError.of(
            "EPIX-MSG-004",
            f"Document type {envelope.document_type!r} needs a {expected} document, "
            f"got {root.tag}.",
            "/",
        )
    if envelope.document_type == ENDORSEMENT:
        findings = check_schema(root)
    else:
        schema = load_schema(STATUS_SCHEMA)
        findings = (
            []
            if schema.validate(root)
            else [
                Finding("EPIX-SCHEMA-001", error.message, error.path or None, error.line or None)
                for error in schema.error_log  # type: ignore[attr-defined]  # stubs lack __iter__
            ][:20]
        )
    if findings:
        raise EpixError(findings)
    return root


def _reference(element: etree._Element | None) -> PermitReference | None:
    if element is None:
        return None

    def text(name: str) -> str:
        return (element.findtext(f"{{{EPIX_STATUS}}}{name}") or "").strip()

    return PermitReference(text("IssuingParty"), text("PermitNumber"), text("DocumentSHA256"))


def read_status(root: etree._Element) -> StatusDocument:
    """The content of a schema-valid status change."""
    permit = _reference(root.find(f"{{{EPIX_STATUS}}}Permit"))
    assert permit is not None  # the schema requires it
    reason = root.findtext(f"{{{EPIX_STATUS}}}Reason")
    return StatusDocument(
        permit=permit,
        status=(root.findtext(f"{{{EPIX_STATUS}}}Status") or "").strip(),
        reason=reason.strip() if reason else None,
        replaced_by=_reference(root.find(f"{{{EPIX_STATUS}}}ReplacedBy")),
    )


def _trust(database: Database, envelope: Envelope, sha256: str) -> SubmissionResult | _EitherRole:
    """One short read: a replay answers at once; else the destination must be known and the
    sender's certificates for the document's signing roles are copied for verification."""
    with database.read() as session:
        replayed = replay_or_check_destination(session, envelope, sha256)
        if replayed is not None:
            return replayed
        store = RegistryTrustStore(session)
        roles = SIGNING_ROLES[envelope.document_type]
        copied = [c for role in roles for c in store.candidates(envelope.sender, role)]
        return _EitherRole(StaticTrustStore(copied), roles)


def verify(root: etree._Element, envelope: Envelope, trust: _EitherRole) -> Verified:
    """Verify against the registry, then check the signed content names the envelope's
    Parties (EPIX-MSG-009): an endorsement is by its sender (where it may go needs this
    node's copy of the permit: ``check_addressee``); a cancellation or replacement comes from
    the issuer itself."""
    roles = SIGNING_ROLES[envelope.document_type]
    verdict = verify_document(root, party=envelope.sender, role=roles[0], trust=trust)
    verdict.raise_if_invalid()
    assert verdict.signed_element is not None and verdict.certificate is not None
    signed = verdict.signed_element
    if envelope.document_type == ENDORSEMENT:
        document = read_endorsement(signed)
        if document.endorsing_party != envelope.sender:
            raise EpixError.of(
                "EPIX-MSG-009",
                f"The endorsement is by {document.endorsing_party}, but the envelope says it "
                f"comes from {envelope.sender}.",
                "/Endorsement/EndorsingParty",
            )
        return Verified(verdict, verdict.certificate, endorsement=document)
    status = read_status(signed)
    if status.status in _ISSUER_ONLY and status.permit.issuing_party != envelope.sender:
        raise EpixError.of(
            "EPIX-MSG-009",
            f"Only the issuing Party ({status.permit.issuing_party}) may say its permit was "
            f"{status.status}; the envelope says {envelope.sender}.",
            "/StatusChange/Permit/IssuingParty",
        )
    return Verified(verdict, verdict.certificate, status=status)


def check_addressee(database: Database, document: EndorsementDocument, envelope: Envelope) -> None:
    """An endorsement goes to the Party that issued the permit; an export endorsement also to
    the importing Party of the permit this node holds (``endorsements.service.forward_to``),
    so that its import inspection is held to the exported quantities. EPIX-MSG-009 else, or
    EPIX-MSG-011 when this node never received the permit and so cannot tell."""
    if document.issuing_party == envelope.recipient:
        return
    if document.side is Side.EXPORT:
        with database.read() as session:
            permit = session.scalar(
                select(Permit).where(
                    Permit.issuing_party == document.issuing_party,
                    Permit.number == document.permit_number,
                )
            )
        if permit is None:
            raise _permit_never_arrived(document, envelope)
        if permit.importer_party == envelope.recipient:
            return
    raise EpixError.of(
        "EPIX-MSG-009",
        f"An endorsement goes to the Party that issued the permit ({document.issuing_party})"
        f" or, for an export endorsement, to its importing Party; not to {envelope.recipient}.",
        "X-EPIX-To",
    )


def _permit_never_arrived(document: EndorsementDocument, envelope: Envelope) -> EpixError:
    """Why an export endorsement cannot be taken by a node that never got its permit, and what
    the issuing Party's operator can do (the sender shows this to its customs as is)."""
    issuer, number, here = document.issuing_party, document.permit_number, envelope.recipient
    return EpixError.of(
        "EPIX-MSG-011",
        f"The node of {here} does not hold permit {issuer} {number}: the permit never reached "
        f"it, so it cannot check that {here} is the importing Party nor hold the import "
        f"inspection to this export endorsement. On {issuer}'s node, the operator finds the "
        f"permit's delivery to {here} (`epix outbox list`), resends it "
        f"(`epix outbox resend ID`); {issuer}'s node sends this endorsement again by itself "
        "until the permit is there (for EPIX_OUTBOX_PERMIT_WAIT_SECONDS; after that, resend it "
        "the same way).",
        "/Endorsement/Permit",
    )


def receive(
    database: Database,
    *,
    envelope: Envelope,
    body: bytes,
    principal: Principal,
    settings: Settings,
    identity: NodeIdentity,
    request: RequestContext | None = None,
) -> SubmissionResult:
    """Run the pipeline for one endorsement or status document and return the signed receipt
    (a refusal is a ``rejected`` one, audited and not stored)."""
    arrival = Arrival.of(database, envelope, body, principal, settings, identity, request)
    sha256 = arrival.sha256
    try:
        check_sender(envelope, principal, settings)
        # A copy of a message already received gets the first receipt before the document is
        # judged again (as a resubmitted permit, ``service.submit``).
        trust = _trust(database, envelope, sha256)
        if isinstance(trust, SubmissionResult):
            return audit_replay(arrival, trust)
        root = check_document(body, envelope, settings)
        verified = verify(root, envelope, trust)
        if verified.endorsement is not None:
            check_addressee(database, verified.endorsement, envelope)
    except EpixError as exc:
        return reject(arrival, exc, None, action=ACTIONS[envelope.document_type])
    findings = tuple(f for f in verified.verdict.findings if f.severity is not Severity.ERROR)
    try:
        with database.unit_of_work() as session:
            status, receipt, findings = _store(session, arrival, body, verified, findings)
    except IntegrityError:
        # A concurrent copy of the same message won: answer with its receipt, or refuse
        # (signed and audited, as any refusal) when its bytes were other ones.
        try:
            with database.unit_of_work() as session:
                existing = seen_message(session, envelope.sender, envelope.message_id)
                if existing is not None:
                    return record_replay(session, arrival, replay(session, existing, sha256))
        except EpixError as exc:
            return reject(arrival, exc, None, action=ACTIONS[envelope.document_type])
        raise StorageUnavailable.conflict() from None
    except SQLAlchemyError as exc:
        if database_trouble(exc) is not None:
            raise  # an outage: answered 503 with its EPIX-DB code and Retry-After
        raise StorageUnavailable.failed(exc, envelope.message_id) from None
    return arrival.answer(status, receipt, findings)


def _store(
    session: Session,
    arrival: Arrival,
    body: bytes,
    verified: Verified,
    findings: tuple[Finding, ...],
) -> tuple[str, bytes, tuple[Finding, ...]]:
    """The one transaction: the document's effect on this node's copy of the permit, then the
    receipt (which says if the ledger refused it), bytes, inbox entry or onward row, audit event.
    Returns the receipt's status, bytes and findings."""
    envelope, principal, settings = arrival.envelope, arrival.principal, arrival.settings
    effect = _apply(session, verified, body, principal, settings, arrival.identity)
    if effect.get("ledger") == "not recorded":
        findings += (
            Finding(
                "EPIX-QTY-011",
                f"{verified.permit.issuing_party}'s ledger for permit {verified.permit.number} "
                f"did not record this endorsement ({', '.join(effect['codes'])}): "
                f"{effect['message']} The signed endorsement is kept as received.",
                "/",
            ),
        )
    status = outcome_status(findings)
    receipt = arrival.receipt(status, findings)
    message = store_message(session, arrival, body, status)
    session.add(
        Receipt(
            message_pk=message.id,
            status=status,
            codes=" ".join(f.code for f in findings),
            issued_at=arrival.received_at,
            body=receipt,
        )
    )
    permit = verified.permit
    route_message(
        session,
        message,
        settings,
        order_key=outbox.permit_order_key(permit.issuing_party, permit.number),
    )
    # Kept as long as the permit's own events when this node holds it (audit retention).
    valid_until = session.scalar(
        select(Permit.valid_until).where(
            Permit.issuing_party == permit.issuing_party, Permit.number == permit.number
        )
    )
    record_event(
        session,
        action=ACTIONS[envelope.document_type],
        outcome="ok",
        actor=principal,
        party=envelope.sender,
        message_id=envelope.message_id,
        permit_number=permit.number,
        request=arrival.request,
        payload_sha256=arrival.sha256,
        permit_valid_until=valid_until.date() if valid_until else None,
        detail={
            "to": envelope.recipient,
            "document_type": envelope.document_type,
            "issuing_party": permit.issuing_party,
            "permit_sha256": permit.sha256,
            "signer": verified.signer.fingerprint,
            "signer_role": verified.signer.role,
            "effect": effect,
            "codes": [f.code for f in findings],
        },
    )
    return status, receipt, findings


def _apply(
    session: Session,
    verified: Verified,
    body: bytes,
    principal: Principal,
    settings: Settings,
    identity: NodeIdentity,
) -> dict[str, Any]:
    """What the document does to this node's copy of the permit (nothing if it has none)."""
    if verified.status is not None:
        change = verified.status
        return apply_received(
            session,
            sender=principal.party,
            issuing_party=change.permit.issuing_party,
            number=change.permit.number,
            sha256=change.permit.sha256,
            status=change.status,
            reason=change.reason,
            replaced_by=(
                (change.replaced_by.issuing_party, change.replaced_by.number)
                if change.replaced_by
                else None
            ),
        )
    assert verified.endorsement is not None
    try:
        recorded = endorsements.record_received(
            session,
            document=verified.endorsement,
            data=body,
            signed_by="authority" if verified.signer.role == CUSTOMS else "node",
            actor=principal,
            announce=StatusAnnouncer(settings, identity),
            give_up_seconds=settings.outbox_give_up_seconds,
        )
    except EpixError as exc:
        return {
            "ledger": "not recorded",
            "codes": [f.code for f in exc.findings],
            "message": exc.findings[0].message,
        }
    return {
        "ledger": "recorded",
        "endorsement_id": recorded.endorsement.endorsement_id,
        # What the ledger entered (None: these bytes were entered before, under another id).
        "entry": recorded.ledger_entry,
    }
