"""Permit lookup at the border: one answer with everything customs need to decide.

The permit (parsed from the signed bytes), the signature verdict as the registry stood when the
node received it, status and validity, per-line permitted and remaining quantities from the
endorsement ledger, compliance flags and the history. A permit that does not exist and one the
caller may not see give the same answer (EPIX-STATE-007), so numbers cannot be probed. Each
lookup is audited and makes the caller's Party a watcher, told of later status changes.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from epix.audit.context import RequestContext
from epix.audit.models import AuditEvent
from epix.audit.service import record_event
from epix.auth.principal import SECRETARIAT_PARTY, Principal, Role
from epix.db.base import utcnow
from epix.endorsements.ledger import ledger
from epix.errors import EpixError, Finding
from epix.exchange.models import (
    NUMBER_MAX_LENGTH,
    PARTY_MAX_LENGTH,
    Message,
    Permit,
    PermitWatcher,
    Receipt,
)
from epix.exchange.repository import LINES_WHEN_USED, permit_not_found
from epix.exchange.service import sha256_hex
from epix.permits.model import Permit as PermitBoxes
from epix.permits.reader import read_permit
from epix.registry.roles import MANAGEMENT_AUTHORITY
from epix.registry.trust import RegistryTrustStore
from epix.signatures.verify import Verdict, verify_document
from epix.xml import parse_xml

ACTION_LOOKUP = "permit.lookup"
Found = TypeVar("Found")
_HISTORY_ACTIONS = (
    "message.submit",
    "permit.cancel",
    "permit.replace",
    "endorsement.record",
    "endorsement.receive",
    "status.receive",
)
# Audited under the sending Party, with the permit's issuer in the detail (exchange.incoming).
_RECEIVED_ACTIONS = frozenset({"endorsement.receive", "status.receive"})


def effective_status(permit: Permit, at: datetime | None = None) -> str:
    """The stored status, or ``expired`` once the validity has ended on an open permit."""
    at = at or utcnow()
    if permit.status in ("issued", "endorsed") and permit.valid_until and permit.valid_until < at:
        return "expired"
    return permit.status


def may_look_up(permit: Permit, principal: Principal, token: str | None) -> bool:
    """The two Parties of the permit and the Secretariat always; anyone else with a role that
    checks permits, and the issuer's security token where the issuer set one."""
    if principal.party in (permit.issuing_party, permit.recipient_party):
        return True
    if principal.party == SECRETARIAT_PARTY and principal.has(Role.SECRETARIAT):
        return True
    if not principal.roles & {Role.CUSTOMS, Role.MANAGEMENT_AUTHORITY}:
        return False
    if permit.security_token_sha256 is None:
        return True
    return token is not None and hmac.compare_digest(
        sha256_hex(token.encode()), permit.security_token_sha256
    )


def find_visible_permit(
    session: Session, *, party: str, number: str, principal: Principal, token: str | None
) -> Permit:
    """The permit if the caller may see it, else the same EPIX-STATE-007 as a missing one."""
    permit = session.scalar(
        select(Permit)
        .where(Permit.issuing_party == party, Permit.number == number)
        .options(LINES_WHEN_USED)
    )
    if permit is None or not may_look_up(permit, principal, token):
        raise permit_not_found(party, number)
    return permit


def _watch(session: Session, permit: Permit, party: str, reason: str) -> None:
    """Make ``party`` a watcher of ``permit`` unless it is one (or the issuer).

    Two requests of one Party (two officers looking up, a lookup and an inbox fetch) can both
    find no row; the one that commits second must not fail on the unique constraint, so the
    insert runs in a savepoint and a row committed meanwhile counts as done.
    """
    exists = session.scalar(
        select(PermitWatcher.id).where(
            PermitWatcher.permit_id == permit.id, PermitWatcher.party == party
        )
    )
    if exists is not None or party == permit.issuing_party:
        return
    try:
        with session.begin_nested():
            session.add(
                PermitWatcher(permit_id=permit.id, party=party, reason=reason, since=utcnow())
            )
    except IntegrityError:
        pass  # the same Party became a watcher in a transaction that committed meanwhile


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def _issuer_of(event: AuditEvent) -> str | None:
    """The issuing Party of the permit an event is about. Numbers are unique per issuer only,
    so events of another Party's permit of the same number must not show in this one's history.
    Documents received from a peer are audited under their sender (an endorsement's sender is
    the endorsing Party) and name the issuer in their detail; every other event is audited under
    the issuing Party."""
    if event.action in _RECEIVED_ACTIONS:
        issuer = json.loads(event.detail).get("issuing_party")
        return issuer if isinstance(issuer, str) else None
    return event.party


def verified_permit(
    session: Session, permit: Permit
) -> tuple[Message, Verdict, PermitBoxes | None]:
    """The stored message, its signature verdict as the registry stood when the node received
    it, and the boxes read from what the verifier says was signed (None when it did not verify:
    business data is never read from unverified bytes)."""
    message = session.get(Message, permit.message_pk)
    assert message is not None  # a permit row always points at its stored message
    trust = RegistryTrustStore(session, as_of=message.received_at)
    verdict = verify_document(
        # Bytes the node accepted under its EPIX_MAX_BODY_BYTES, which may exceed the
        # parser's default cap: they are not judged by size again.
        parse_xml(message.body, max_bytes=len(message.body)),
        party=permit.issuing_party,
        role=MANAGEMENT_AUTHORITY,
        trust=trust,
        at=message.received_at,
    )
    if not verdict.valid or verdict.signed_element is None:
        return message, verdict, None
    return message, verdict, read_permit(verdict.signed_element)


def permit_view(session: Session, permit: Permit, base_path: str) -> dict[str, Any]:
    """The full lookup answer as JSON values."""
    message, verdict, boxes = verified_permit(session, permit)
    parsed = _jsonable(asdict(boxes)) if boxes is not None else None
    receipts = session.scalars(
        select(Receipt).where(Receipt.message_pk == message.id).order_by(Receipt.id)
    ).all()
    history = [
        event
        for event in session.scalars(
            select(AuditEvent)
            .where(
                AuditEvent.permit_number == permit.number,
                AuditEvent.action.in_(_HISTORY_ACTIONS),
            )
            .order_by(AuditEvent.sequence)
        )
        if _issuer_of(event) == permit.issuing_party
    ]
    replaced_by = session.get(Permit, permit.replaced_by_id) if permit.replaced_by_id else None
    return {
        "issuing_party": permit.issuing_party,
        "number": permit.number,
        "document_type": permit.document_type,
        "recipient_party": permit.recipient_party,
        "exporter_party": permit.exporter_party,
        "importer_party": permit.importer_party,
        "status": effective_status(permit),
        "status_reason": permit.status_reason,
        "status_changed_at": _jsonable(permit.status_changed_at),
        "replaced_by": (
            {"issuing_party": replaced_by.issuing_party, "number": replaced_by.number}
            if replaced_by
            else None
        ),
        "valid_from": _jsonable(permit.valid_from),
        "valid_until": _jsonable(permit.valid_until),
        "sha256": permit.signed_sha256,
        "xml_url": f"{base_path}/xml",
        "message_id": message.message_id,
        "received_at": _jsonable(message.received_at),
        "signature": verdict.as_dict(),
        "lines": [balance.as_dict() for balance in ledger(session, permit)],
        "compliance": json.loads(permit.compliance_codes),
        "permit": parsed,
        "receipts": [
            {
                "status": receipt.status,
                "codes": receipt.codes.split(),
                "issued_at": _jsonable(receipt.issued_at),
            }
            for receipt in receipts
        ],
        "history": [
            {
                "sequence": event.sequence,
                "at": _jsonable(event.occurred_at),
                "action": event.action,
                "outcome": event.outcome,
                "party": event.party,
                "by": event.actor_username,
            }
            for event in history
        ],
    }


def find_audited(
    session: Session,
    *,
    party: str,
    number: str,
    principal: Principal,
    request: RequestContext | None,
    find: Callable[[], Found],
    detail: dict[str, object] | None = None,
) -> Found:
    """What ``find`` gives the caller of the permit; a refused lookup is audited too (the
    caller commits it). ``find`` decides who may see it: the lookup's rule
    (``find_visible_permit``) or, for the ledger and the endorsements, the permit's two
    Parties.

    A Party code or number longer than a permit row holds can be on file for no one, and its
    audit row could not be stored (PostgreSQL refuses it, so the lookup went unaudited and was
    answered with the database's words): such a lookup is refused as malformed, the same on
    every backend, whether or not the caller may see permits."""
    oversized = [
        Finding("EPIX-REQ-004", f"A {label} has at most {longest} characters.", field)
        for field, label, value, longest in (
            ("party", "Party code", party, PARTY_MAX_LENGTH),
            ("number", "permit number", number, NUMBER_MAX_LENGTH),
        )
        if len(value) > longest
    ]
    if oversized:
        raise EpixError(oversized)
    try:
        return find()
    except EpixError as exc:
        record_event(
            session,
            action=ACTION_LOOKUP,
            outcome=exc.findings[0].code,
            actor=principal,
            party=party,
            permit_number=number,
            request=request,
            detail=detail,
        )
        raise


def record_lookup(
    session: Session,
    permit: Permit,
    *,
    principal: Principal,
    request: RequestContext | None,
    payload_sha256: str,
    detail: dict[str, object],
) -> None:
    """Audit what ``principal`` was shown of ``permit`` (its lookup answer, its signed bytes,
    its ledger, its endorsements) as a lookup: every access to a permit is attributable."""
    record_event(
        session,
        action=ACTION_LOOKUP,
        outcome="ok",
        actor=principal,
        party=permit.issuing_party,
        permit_number=permit.number,
        request=request,
        payload_sha256=payload_sha256,
        detail=detail,
        permit_valid_until=permit.valid_until.date() if permit.valid_until else None,
    )


def _find_visible_audited(
    session: Session,
    *,
    party: str,
    number: str,
    token: str | None,
    principal: Principal,
    request: RequestContext | None,
    detail: dict[str, object] | None = None,
) -> Permit:
    """The permit the caller may look up (``find_visible_permit``), a refusal audited."""
    return find_audited(
        session,
        party=party,
        number=number,
        principal=principal,
        request=request,
        find=lambda: find_visible_permit(
            session, party=party, number=number, principal=principal, token=token
        ),
        detail=detail,
    )


def lookup_permit(
    session: Session,
    *,
    party: str,
    number: str,
    token: str | None,
    principal: Principal,
    request: RequestContext | None,
    base_path: str,
) -> dict[str, Any]:
    """Look a permit up, audit it (refusals too) and subscribe the caller's Party."""
    permit = _find_visible_audited(
        session, party=party, number=number, token=token, principal=principal, request=request
    )
    view = permit_view(session, permit, base_path)
    _watch(session, permit, principal.party, "lookup")
    record_lookup(
        session,
        permit,
        principal=principal,
        request=request,
        payload_sha256=permit.signed_sha256,
        detail={"status": view["status"], "signature_valid": view["signature"]["valid"]},
    )
    return view


def permit_bytes(
    session: Session,
    *,
    party: str,
    number: str,
    token: str | None,
    principal: Principal,
    request: RequestContext | None,
) -> tuple[Permit, bytes]:
    """The byte-exact signed permit (audited as a lookup)."""
    permit = _find_visible_audited(
        session,
        party=party,
        number=number,
        token=token,
        principal=principal,
        request=request,
        detail={"format": "xml"},
    )
    message = session.get(Message, permit.message_pk)
    assert message is not None
    _watch(session, permit, principal.party, "lookup")
    record_lookup(
        session,
        permit,
        principal=principal,
        request=request,
        payload_sha256=message.sha256,
        detail={"format": "xml"},
    )
    return permit, message.body


def watch_message(session: Session, message: Message, party: str) -> None:
    """A Party that fetched a permit message from its inbox is told of its status changes."""
    permit = session.scalar(select(Permit).where(Permit.message_pk == message.id))
    if permit is not None:
        _watch(session, permit, party, "pulled")
