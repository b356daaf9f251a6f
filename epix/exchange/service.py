"""The submit pipeline: one function from received bytes to a signed receipt.

Order (design brief): size cap → hardened parse → schema → code lists and rules → signature
against the registry → compliance screening → ONE transaction storing bytes, hash, permit,
audit event and delivery rows → signed receipt. It stops at the first fatal finding.

CPU work (parse, schema, signature, receipt signing) runs outside any database transaction: on
SQLite every transaction holds the write lock, so the pipeline uses one short read and one
short write. That is why ``submit`` takes the ``Database`` rather than a session. The receipt
is handed back only after the write committed (guarantee 1).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal

from lxml import etree
from sqlalchemy import bindparam, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from epix.audit.context import RequestContext
from epix.audit.service import record_event
from epix.auth.principal import Principal
from epix.compliance import has_reservation, screen_permit
from epix.db import Database
from epix.db.base import table_of, utcnow
from epix.db.prepared import Prepared
from epix.db.trouble import database_trouble
from epix.delivery import outbox
from epix.delivery.webhooks import publish_event
from epix.endorsements.checks import precision_problem
from epix.errors import EpixError, Finding, Severity
from epix.exchange.envelope import Envelope
from epix.exchange.inbox import deliver_to_inbox
from epix.exchange.models import Message, Permit, PermitLine, PermitWatcher, Receipt
from epix.exchange.node_identity import NodeIdentity
from epix.exchange.receipts import REJECTED, ReceiptFacts, outcome_status, sign_receipt
from epix.permits import locations
from epix.permits import model as permit_model
from epix.permits.legacy import is_legacy_v1
from epix.permits.reader import extract_permit_element, read_permit
from epix.permits.validation import check_codes_and_rules, check_schema
from epix.registry import repository as registry
from epix.registry.roles import MANAGEMENT_AUTHORITY
from epix.registry.trust import RegistryTrustStore
from epix.settings import NodeMode, Settings
from epix.signatures.trust import StaticTrustStore, TrustedCertificate, TrustStore
from epix.signatures.verify import Verdict, verify_document
from epix.xml import parse_xml
from epix.xml.namespaces import CITES_PERMIT

log = logging.getLogger("epix.exchange")
ACTION_SUBMIT = "message.submit"
# A message id seen before with the same bytes, answered with its original receipt.
ACTION_REPLAY = "message.replay"
PERMIT_TAG = f"{{{CITES_PERMIT}}}CITESEPermit"
# The webhook event a Party's system gets when a document of this type lands in its inbox.
RECEIVED_EVENTS = {"endorsement": "endorsement.received", "status": "status.changed"}


@dataclass(frozen=True, slots=True)
class SubmissionResult:
    """What the node answers: the signed receipt, its status and codes."""

    status: str
    receipt: bytes
    sha256: str
    received_at: datetime
    message_id: str | None
    findings: tuple[Finding, ...] = ()
    replayed: bool = False
    http_status: int = 201

    @property
    def accepted(self) -> bool:
        return self.status != REJECTED


@dataclass(slots=True)
class _Checked:
    """A permit that passed every fatal step, with what the store needs."""

    permit: permit_model.Permit
    verdict: Verdict
    findings: list[Finding] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Arrival:
    """One received document: who sent it, when, its hash, and the node that answers.

    Every step from the first check to the receipt needs these; refusals and conflicts too.
    """

    database: Database
    envelope: Envelope
    principal: Principal
    settings: Settings
    identity: NodeIdentity
    request: RequestContext | None
    sha256: str
    received_at: datetime

    @classmethod
    def of(
        cls,
        database: Database,
        envelope: Envelope,
        body: bytes,
        principal: Principal,
        settings: Settings,
        identity: NodeIdentity,
        request: RequestContext | None,
    ) -> Arrival:
        """Stamped now, with the SHA-256 of the bytes as received."""
        return cls(
            database, envelope, principal, settings, identity, request, sha256_hex(body), utcnow()
        )

    def receipt(self, status: str, findings: tuple[Finding, ...]) -> bytes:
        """The node-signed receipt for this arrival."""
        facts = ReceiptFacts(
            sha256=self.sha256,
            received_at=self.received_at,
            status=status,
            node_party=self.settings.node_party,
            findings=findings,
            message_id=self.envelope.message_id,
            sender=self.envelope.sender,
            recipient=self.envelope.recipient,
        )
        return sign_receipt(facts, self.identity)

    def answer(
        self, status: str, receipt: bytes, findings: tuple[Finding, ...]
    ) -> SubmissionResult:
        """The stored arrival's result (a fresh receipt, HTTP 201)."""
        return SubmissionResult(
            status=status,
            receipt=receipt,
            sha256=self.sha256,
            received_at=self.received_at,
            message_id=self.envelope.message_id,
            findings=findings,
        )


class StorageUnavailable(EpixError):
    """The final transaction failed: nothing was stored and no receipt was issued."""

    @classmethod
    def failed(cls, exc: Exception, message_id: str) -> StorageUnavailable:
        """The database refused the write; call inside the ``except`` block (it logs the cause)."""
        log.exception("storing message %s failed", message_id)
        return cls(
            [
                Finding(
                    "EPIX-MSG-008",
                    f"The node could not store the message ({type(exc).__name__}); nothing "
                    "was accepted. Retry with the same message id.",
                    "/",
                )
            ]
        )

    @classmethod
    def conflict(cls) -> StorageUnavailable:
        """A concurrent write of the same message lost the race and left nothing to replay."""
        return cls(
            [Finding("EPIX-MSG-008", "A concurrent write conflicted; retry with the same id.", "/")]
        )


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fatal(findings: Sequence[Finding]) -> bool:
    return any(f.severity is Severity.ERROR for f in findings)


def _as_utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def check_parties(envelope: Envelope, principal: Principal, settings: Settings) -> None:
    """The sender must be the caller's own Party and differ from the destination; on a Party
    node one of the two must be that node's Party (it relays nobody else's messages: the
    destination's node would refuse it sending as another Party, EPIX-AUTH-005)."""
    if envelope.sender != principal.party:
        raise EpixError.of(
            "EPIX-AUTH-005",
            f"You act for {principal.party}; you may not send as {envelope.sender}.",
            "X-EPIX-From",
        )
    if envelope.sender == envelope.recipient:
        raise EpixError.of(
            "EPIX-MSG-006", "Sender and destination are the same Party.", "X-EPIX-To"
        )
    if not (is_hosted(envelope.sender, settings) or is_hosted(envelope.recipient, settings)):
        raise EpixError.of(
            "EPIX-MSG-010",
            f"This node is {settings.node_party}'s and carries only messages from or for "
            f"{settings.node_party}; send this one from {envelope.sender} to "
            f"{envelope.recipient}'s node.",
            "X-EPIX-To",
        )


def check_envelope(envelope: Envelope, principal: Principal, settings: Settings) -> None:
    """A permit, from the caller's own Party to another one."""
    check_parties(envelope, principal, settings)
    if envelope.document_type != "permit":
        raise EpixError.of(
            "EPIX-MSG-004",
            f"This endpoint accepts permits; document type {envelope.document_type!r} is "
            "delivered node-to-node by the outbox.",
            "X-EPIX-Document-Type",
        )


def check_document(
    body: bytes, envelope: Envelope, settings: Settings
) -> tuple[etree._Element, permit_model.Permit, list[Finding]]:
    """Size cap, hardened parse, schema, code lists and rules: no database, no keys."""
    root = parse_xml(body, max_bytes=settings.max_body_bytes, max_depth=settings.max_xml_depth)
    if is_legacy_v1(root):
        # Readable (``epix validate``), but a v1 layout carries no EPIX-DSIG-1 signature.
        raise EpixError.of(
            "EPIX-MSG-004",
            "This is a Toolkit v1 (CBFShip) document; submit the signed CITESEPermit v2.",
            "/",
        )
    if root.tag != PERMIT_TAG:
        element = extract_permit_element(root)  # names what was found instead (EPIX-XML-005)
        if element is not root:
            raise EpixError.of(
                "EPIX-MSG-004",
                "Submit the signed CITESEPermit itself, not a wrapper around it.",
                "/",
            )
    findings = list(check_schema(root))
    if _fatal(findings):
        raise EpixError(findings)
    permit = read_permit(root)
    findings += check_codes_and_rules(permit, root, has_reservation=has_reservation)
    if _fatal(findings):
        raise EpixError(findings)
    findings += _ledger_findings(permit, root)
    if _fatal(findings):
        raise EpixError(findings)
    if permit.issuing_country != envelope.sender:
        raise EpixError.of(
            "EPIX-MSG-002",
            f"The permit was issued by {permit.issuing_country or 'an unnamed Party'}, "
            f"but the envelope says it comes from {envelope.sender}.",
            "X-EPIX-From",
        )
    return root, permit, findings


def _ledger_findings(permit: permit_model.Permit, root: etree._Element) -> list[Finding]:
    """Box 11 quantities the endorsement ledger cannot hold exactly: stored rounded, they
    would let customs record more than the signed permit allows (EPIX-QTY-012)."""
    findings = []
    lines = locations.LineFinder(root)
    for index, line in enumerate(permit.lines, start=1):
        problem = precision_problem(line.quantity) if line.quantity is not None else None
        if problem is not None:
            where = locations.line(index, locations.QUANTITY)
            findings.append(
                Finding(
                    "EPIX-QTY-012",
                    f"Line {line.line_id}: {problem}",
                    where,
                    lines(where),
                )
            )
    return findings


def _snapshot_trust(session: Session, party: str) -> TrustStore:
    """The registry's certificates for ``party`` as MA, copied so verification needs no lock."""
    registry_store = RegistryTrustStore(session)
    return _DeferredTrust(list(registry_store.candidates(party, MANAGEMENT_AUTHORITY)), party)


class _DeferredTrust:
    """Candidates copied from the registry; ``owner_of`` (only needed to name a signer bound
    to another Party) is answered by a ``StaticTrustStore`` filled on demand by the caller."""

    def __init__(self, candidates: list[TrustedCertificate], party: str) -> None:
        self._store = StaticTrustStore(candidates)
        self.party = party
        self.unknown_fingerprints: list[str] = []

    def candidates(self, party: str, role: str) -> Sequence[TrustedCertificate]:
        return self._store.candidates(party, role)

    def owner_of(self, fingerprint: str) -> TrustedCertificate | None:
        owner = self._store.owner_of(fingerprint)
        if owner is None:
            self.unknown_fingerprints.append(fingerprint)
        return owner


def find_message(session: Session, sender: str, message_id: str) -> Message | None:
    return session.scalar(
        select(Message).where(Message.sender_party == sender, Message.message_id == message_id)
    )


@dataclass(frozen=True, slots=True)
class SeenMessage:
    """What answering a replayed message id needs of the stored message."""

    id: int
    message_id: str
    sender_party: str
    sha256: str
    status: str
    received_at: datetime


# Statements every submission runs, compiled once and run on the DBAPI cursor (building one
# costs more than running it, and Session.execute costs more again: epix.db.prepared).
_MESSAGES, _RECEIPTS, _PERMITS = table_of(Message), table_of(Receipt), table_of(Permit)
_SEEN_MESSAGE = Prepared(
    select(
        _MESSAGES.c.id,
        _MESSAGES.c.message_id,
        _MESSAGES.c.sender_party,
        _MESSAGES.c.sha256,
        _MESSAGES.c.status,
        _MESSAGES.c.received_at,
    ).where(
        _MESSAGES.c.sender_party == bindparam("sender"),
        _MESSAGES.c.message_id == bindparam("message_id"),
    )
)
_RECEIPT_BODY = Prepared(
    select(_RECEIPTS.c.body).where(_RECEIPTS.c.message_pk == bindparam("message_pk"))
)
_STORED_PERMIT_SHA256 = Prepared(
    select(_PERMITS.c.signed_sha256).where(
        _PERMITS.c.issuing_party == bindparam("party"), _PERMITS.c.number == bindparam("number")
    )
)
_INSERT_MESSAGE = Prepared(insert(_MESSAGES).returning(_MESSAGES.c.id))
_INSERT_PERMIT = Prepared(insert(_PERMITS).returning(_PERMITS.c.id))
_INSERT_RECEIPT = Prepared(insert(_RECEIPTS))
_INSERT_LINES = Prepared(insert(table_of(PermitLine)))
_INSERT_WATCHER = Prepared(insert(table_of(PermitWatcher)))


def seen_message(session: Session, sender: str, message_id: str) -> SeenMessage | None:
    """The stored message with this id from ``sender``, without its bytes."""
    row = _SEEN_MESSAGE.first(session, {"sender": sender, "message_id": message_id})
    return None if row is None else SeenMessage(*row)


def replay(session: Session, existing: SeenMessage, sha256: str) -> SubmissionResult:
    """Same id and bytes: the original receipt. Same id, other bytes: EPIX-MSG-001."""
    if existing.sha256 != sha256:
        raise EpixError.of(
            "EPIX-MSG-001",
            f"Message id {existing.message_id} was already used by {existing.sender_party} "
            f"for other bytes (SHA-256 {existing.sha256}).",
            "X-EPIX-Message-Id",
        )
    receipt = _RECEIPT_BODY.scalar(session, {"message_pk": existing.id})
    if receipt is None:  # every stored message has its receipt, written in the same transaction
        raise RuntimeError(f"message {existing.id} has no receipt")
    return SubmissionResult(
        status=existing.status,
        receipt=receipt,
        sha256=existing.sha256,
        received_at=existing.received_at,
        message_id=existing.message_id,
        findings=(),
        replayed=True,
        http_status=200,
    )


def record_replay(session: Session, arrival: Arrival, result: SubmissionResult) -> SubmissionResult:
    """Audit a transmission answered with its original receipt (``replay``): nothing is
    stored again, but the node received it and sent that receipt again. The permit it carried
    (number, and validity for the event's retention) is the one stored with the first copy."""
    envelope = arrival.envelope
    stored = session.execute(
        select(Permit.number, Permit.valid_until)
        .join(Message, Permit.message_pk == Message.id)
        .where(Message.sender_party == envelope.sender, Message.message_id == envelope.message_id)
    ).first()
    record_event(
        session,
        action=ACTION_REPLAY,
        outcome="ok",
        actor=arrival.principal,
        party=envelope.sender,
        message_id=envelope.message_id,
        permit_number=stored.number if stored else None,
        request=arrival.request,
        payload_sha256=arrival.sha256,
        detail={
            "status": result.status,
            "to": envelope.recipient,
            "document_type": envelope.document_type,
            "first_received_at": result.received_at.isoformat(),
        },
        permit_valid_until=_date(stored.valid_until) if stored else None,
    )
    return result


def audit_replay(arrival: Arrival, result: SubmissionResult) -> SubmissionResult:
    """``record_replay`` in a transaction of its own (the read phase found the replay)."""
    with arrival.database.unit_of_work() as session:
        return record_replay(session, arrival, result)


def replay_or_check_destination(
    session: Session, envelope: Envelope, sha256: str
) -> SubmissionResult | None:
    """The original receipt when this message id was seen before (other bytes are refused);
    otherwise ``None`` once the destination is known to be a registered Party (EPIX-MSG-003)."""
    existing = seen_message(session, envelope.sender, envelope.message_id)
    if existing is not None:
        return replay(session, existing, sha256)
    if not registry.party_exists(session, envelope.recipient):
        raise EpixError.of(
            "EPIX-MSG-003", f"{envelope.recipient} is not a Party in the registry.", "X-EPIX-To"
        )
    return None


def _read_phase(
    database: Database, envelope: Envelope, sha256: str
) -> SubmissionResult | TrustStore:
    """One short read: a replay answers at once; else the destination must be known and the
    sender's registered MA certificates are copied for the lock-free verification. A snapshot
    read: a concurrent first use of the same id or permit is caught by the write's constraints."""
    with database.read() as session:
        replayed = replay_or_check_destination(session, envelope, sha256)
        if replayed is not None:
            return replayed
        return _snapshot_trust(session, envelope.sender)


def _verify(
    database: Database, root: etree._Element, envelope: Envelope, trust: TrustStore
) -> Verdict:
    verdict = verify_document(root, party=envelope.sender, role=MANAGEMENT_AUTHORITY, trust=trust)
    if not verdict.valid and isinstance(trust, _DeferredTrust) and trust.unknown_fingerprints:
        # The signer is not registered for this Party: ask the whole registry who owns it,
        # so the refusal can say "bound to another Party" (EPIX-SIG-015) rather than unknown.
        with database.read() as session:
            full = RegistryTrustStore(session)
            owners = [full.owner_of(fp) for fp in trust.unknown_fingerprints]
            known = StaticTrustStore(
                [*trust.candidates(envelope.sender, MANAGEMENT_AUTHORITY)]
                + [owner for owner in owners if owner is not None]
            )
        if any(owners):
            verdict = verify_document(
                root, party=envelope.sender, role=MANAGEMENT_AUTHORITY, trust=known
            )
    return verdict


def submit(
    database: Database,
    *,
    envelope: Envelope,
    body: bytes,
    principal: Principal,
    settings: Settings,
    identity: NodeIdentity,
    request: RequestContext | None = None,
) -> SubmissionResult:
    """Run the pipeline for one submission and return the signed receipt.

    Refusals are returned as a result with status ``rejected`` (and audited), never stored.
    Raises ``StorageUnavailable`` when the final transaction fails (no receipt then).
    """
    arrival = Arrival.of(database, envelope, body, principal, settings, identity, request)
    permit_number: str | None = None
    try:
        check_envelope(envelope, principal, settings)
        # A copy of an accepted message (a retry whose answer was lost) gets the first receipt
        # before the document is judged again: code lists or rules updated since must not
        # refuse what was accepted.
        trust_or_replay = _read_phase(database, envelope, arrival.sha256)
        if isinstance(trust_or_replay, SubmissionResult):
            return audit_replay(arrival, trust_or_replay)
        root, permit, findings = check_document(body, envelope, settings)
        permit_number = permit.number
        verdict = _verify(database, root, envelope, trust_or_replay)
        verdict.raise_if_invalid()
        assert verdict.signed_element is not None  # a valid verdict names what was signed
        # Business data is read only from what the verifier says was signed.
        signed_permit = read_permit(verdict.signed_element)
        findings += screen_permit(signed_permit)
        checked = _Checked(signed_permit, verdict, findings)
    except EpixError as exc:
        return reject(arrival, exc, permit_number)
    status = outcome_status(checked.findings)
    receipt = arrival.receipt(status, tuple(checked.findings))
    try:
        with database.unit_of_work() as session:
            store_submission(session, arrival, body, status, checked, receipt)
    except IntegrityError:
        # A concurrent submission won the race for this message id or permit number.
        return _after_conflict(arrival, checked.permit)
    except SQLAlchemyError as exc:
        if database_trouble(exc) is not None:
            raise  # an outage: answered 503 with its EPIX-DB code and Retry-After
        raise StorageUnavailable.failed(exc, envelope.message_id) from None
    return arrival.answer(status, receipt, tuple(checked.findings))


def _after_conflict(arrival: Arrival, permit: permit_model.Permit) -> SubmissionResult:
    envelope = arrival.envelope
    try:
        with arrival.database.unit_of_work() as session:
            existing = seen_message(session, envelope.sender, envelope.message_id)
            if existing is not None:
                return record_replay(session, arrival, replay(session, existing, arrival.sha256))
            _check_permit_unique(session, permit, arrival.sha256)
    except EpixError as exc:
        return reject(arrival, exc, permit.number)
    raise StorageUnavailable.conflict()


def reject(
    arrival: Arrival,
    error: EpixError,
    permit_number: str | None,
    action: str = ACTION_SUBMIT,
) -> SubmissionResult:
    """A signed ``rejected`` receipt and an audit event; the message itself is not stored."""
    findings = tuple(error.findings)
    receipt = arrival.receipt(REJECTED, findings)
    envelope = arrival.envelope
    first = next(f for f in findings if f.severity is Severity.ERROR)
    with arrival.database.unit_of_work() as session:
        record_event(
            session,
            action=action,
            outcome=first.code,
            actor=arrival.principal,
            party=envelope.sender,
            message_id=envelope.message_id,
            permit_number=permit_number,
            request=arrival.request,
            payload_sha256=arrival.sha256,
            detail={
                "status": REJECTED,
                "to": envelope.recipient,
                "codes": [f.code for f in findings],
            },
        )
    return replace(arrival.answer(REJECTED, receipt, findings), http_status=error.http_status)


def _check_permit_unique(session: Session, permit: permit_model.Permit, sha256: str) -> None:
    stored_sha256 = _STORED_PERMIT_SHA256.scalar(
        session,
        {"party": permit.issuing_country or "", "number": permit.number or ""},
    )
    if stored_sha256 is None:
        return
    if stored_sha256 == sha256:
        detail = "was already submitted with these bytes under another message id"
    else:
        detail = "was already submitted with other bytes; cancel or replace it instead"
    raise EpixError.of(
        "EPIX-MSG-007",
        f"Permit {permit.number} of {permit.issuing_country} {detail}.",
        "/CITESEPermit/HeaderExchangedDocument/ID",
    )


def is_hosted(party: str, settings: Settings) -> bool:
    """Whether ``party``'s inbox lives on this node (every Party on a hub)."""
    return settings.node_mode is NodeMode.HUB or party == settings.node_party


def _date(moment: datetime | None) -> date | None:
    return moment.date() if moment is not None else None


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """What routing and auditing need of a message just stored (its row id and envelope)."""

    id: int
    sender_party: str
    message_id: str
    recipient_party: str
    document_type: str
    sha256: str
    body: bytes
    conversation_id: str | None = None


def store_message(session: Session, arrival: Arrival, body: bytes, status: str) -> StoredMessage:
    """The received bytes exactly as sent, with their hash and envelope (one INSERT)."""
    envelope, sha256 = arrival.envelope, arrival.sha256
    message_pk: int = _INSERT_MESSAGE.scalar(
        session,
        {
            "sender_party": envelope.sender,
            "message_id": envelope.message_id,
            "recipient_party": envelope.recipient,
            "document_type": envelope.document_type,
            "conversation_id": envelope.conversation_id,
            "sha256": sha256,
            "body": body,
            "received_at": arrival.received_at,
            "status": status,
            "delivery_state": "pending",
            "submitted_by": arrival.principal.username,
        },
    )
    return StoredMessage(
        id=message_pk,
        sender_party=envelope.sender,
        message_id=envelope.message_id,
        recipient_party=envelope.recipient,
        document_type=envelope.document_type,
        sha256=sha256,
        body=body,
        conversation_id=envelope.conversation_id,
    )


def store_submission(
    session: Session,
    arrival: Arrival,
    body: bytes,
    status: str,
    checked: _Checked,
    receipt: bytes,
) -> StoredMessage:
    """The one transaction: message bytes + hash, receipt, permit and lines, inbox or outbox
    row, and the audit event (recorded last: it holds the audit chain lock until commit).

    A message id or permit number already taken fails a unique constraint here, and the caller
    answers from a fresh read (``_after_conflict``): no check-then-insert on the hot path.
    """
    permit = checked.permit
    envelope, sha256, received_at = arrival.envelope, arrival.sha256, arrival.received_at
    message = store_message(session, arrival, body, status)
    certificate = checked.verdict.certificate
    token = envelope.security_token
    # Prepared Core INSERTs throughout: nothing here is read back through the ORM in this
    # transaction, and an ORM flush costs several times the statement it emits.
    permit_pk = _INSERT_PERMIT.scalar(
        session,
        {
            "issuing_party": permit.issuing_country or envelope.sender,
            "number": permit.number or "",
            "document_type": permit.document_type or "",
            "recipient_party": envelope.recipient,
            "message_pk": message.id,
            "signed_sha256": sha256,
            "security_token_sha256": sha256_hex(token.encode()) if token else None,
            "status": "issued",
            "valid_from": _as_utc(permit.valid_from),
            "valid_until": _as_utc(permit.valid_until),
            "signer_fingerprint": certificate.fingerprint if certificate else None,
            "signer_subject": (
                certificate.certificate.subject.rfc4514_string() if certificate else None
            ),
            "compliance_codes": json.dumps(
                [f.as_dict() for f in checked.findings if f.code.startswith("EPIX-COMP-")]
            ),
            "created_at": received_at,
        },
    )
    _INSERT_RECEIPT.execute(
        session,
        {
            "message_pk": message.id,
            "status": status,
            "codes": " ".join(f.code for f in checked.findings),
            "issued_at": received_at,
            "body": receipt,
        },
    )
    _INSERT_LINES.execute_many(
        session,
        [
            {
                "permit_id": permit_pk,
                "line_id": line.line_id,
                "permitted_quantity": line.quantity if line.quantity is not None else Decimal(0),
                "unit": line.unit,
                "appendix": line.appendix,
                "taxon": line.scientific_name,
            }
            for line in permit.lines
        ],
    )
    _INSERT_WATCHER.execute(
        session,
        {
            "permit_id": permit_pk,
            "party": envelope.recipient,
            "reason": "recipient",
            "since": received_at,
        },
    )
    route_message(
        session,
        message,
        arrival.settings,
        order_key=outbox.permit_order_key(
            permit.issuing_country or envelope.sender, permit.number or ""
        ),
    )
    record_event(
        session,
        action=ACTION_SUBMIT,
        outcome="ok",
        actor=arrival.principal,
        party=envelope.sender,
        message_id=envelope.message_id,
        permit_number=permit.number,
        request=arrival.request,
        payload_sha256=sha256,
        detail={
            "status": status,
            "to": envelope.recipient,
            "document_type": envelope.document_type,
            "codes": [f.code for f in checked.findings],
            "signer": certificate.fingerprint if certificate else None,
        },
        permit_valid_until=_date(permit.valid_until),
    )
    return message


def route_message(
    session: Session, message: StoredMessage, settings: Settings, *, order_key: str
) -> None:
    """Hosted destination: straight into its inbox (and its subscribed webhooks). A peer's:
    an outbox row for the worker, after any earlier one about the same permit (``order_key``).
    ``message`` was stored by ``store_message`` in this same transaction, so it has no inbox
    entry yet."""
    if is_hosted(message.recipient_party, settings):
        entry_id = deliver_to_inbox(
            session, party=message.recipient_party, message=message, new=True
        )
        publish_event(
            session,
            party=message.recipient_party,
            event=RECEIVED_EVENTS.get(message.document_type, "message.received"),
            event_id=f"{message.sender_party}:{message.message_id}",
            data={
                "message_id": message.message_id,
                "from": message.sender_party,
                "document_type": message.document_type,
                "sha256": message.sha256,
                "inbox_entry": entry_id,
            },
            give_up_seconds=settings.outbox_give_up_seconds,
        )
        return
    envelope_headers = {"X-EPIX-Document-Type": message.document_type}
    if message.conversation_id:
        envelope_headers["X-EPIX-Conversation-Id"] = message.conversation_id
    outbox.enqueue(
        session,
        kind=message.document_type,
        destination_party=message.recipient_party,
        payload=message.body,
        message_id=message.message_id,
        sender_party=message.sender_party,
        headers=envelope_headers,
        order_key=order_key,
        give_up_seconds=settings.outbox_give_up_seconds,
    )
