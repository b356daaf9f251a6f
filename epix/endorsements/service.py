"""Reserve, confirm, release and endorse: every ledger change under a lock on the permit row.

Each write path locks the permit (``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite every
transaction is ``BEGIN IMMEDIATE`` already), reads the ledger, checks, then writes the change,
the outbox row that carries the endorsement to the issuing Party and the audit event, all in
the caller's transaction. Two concurrent endorsements of one permit therefore run one after
the other, and the second sees the first.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session, lazyload

from epix.audit.context import RequestContext
from epix.audit.service import record_event
from epix.auth.principal import Principal
from epix.delivery.models import OutboxKind, OutboxMessage
from epix.delivery.outbox import DEFAULT_GIVE_UP_SECONDS, enqueue, permit_order_key, progress
from epix.endorsements.checks import normalise_port, parse_quantity
from epix.endorsements.document import (
    EndorsedLine,
    EndorsementDocument,
    Side,
    read_endorsement,
    write_endorsement,
)
from epix.endorsements.ledger import PermitState, is_expired, line_unit, load_state
from epix.endorsements.models import (
    Endorsement,
    EndorsementLine,
    Reservation,
    ReservationLine,
    ReservationStatus,
)
from epix.errors import EpixError, Finding, Severity
from epix.exchange.lookup import find_audited, may_look_up, record_lookup
from epix.exchange.models import Permit, PermitLine
from epix.exchange.receipts import receipt_outcome
from epix.exchange.repository import LINES_WHEN_USED, lock_permit, permit_not_found
from epix.exchange.status import CANCELLED, REPLACED
from epix.registry.roles import CUSTOMS as CUSTOMS_ROLE
from epix.signatures import TrustStore, verify_document
from epix.xml import parse_xml, xml_text
from epix.xml.parse import DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH

# Signs an endorsement document with EPIX-DSIG-1 (the authority's key, or the node's key on
# its behalf) and returns the signed bytes.
Signer = Callable[[bytes], bytes]
# Tells a permit's watchers (but the Parties named) of its new status: the exchange's
# ``StatusAnnouncer``, the same mechanism that announces cancellations.
Announce = Callable[[Session, Permit, Principal, Collection[str]], Sequence[str]]
ENDORSEMENT_CONTENT_TYPE = "application/xml"


@dataclass(frozen=True, slots=True)
class LineInput:
    """One line as customs typed it; quantity and unit are checked here, not by the caller."""

    line_id: str
    quantity: object
    unit: str


@dataclass(frozen=True, slots=True)
class BorderDetails:
    """Where, when and by whom the consignment was seen (box 14 and box 15)."""

    port: object
    endorsed_on: date
    officer: str
    transport_document: str


@dataclass(frozen=True, slots=True)
class SignedEndorsement:
    endorsement: Endorsement
    document: bytes
    # What this call entered in the ledger, as audited (None: the stored one answered again).
    # An endorsement received from another node is audited once, by the receipt that
    # brought it (``endorsement.receive``, whose effect carries this entry).
    ledger_entry: dict[str, object] | None = None


def find_permit(session: Session, issuing_party: str, number: str) -> Permit:
    """The permit, unlocked (for reading the ledger), or ``EPIX-STATE-007``."""
    permit = session.scalar(
        select(Permit)
        .where(Permit.issuing_party == issuing_party, Permit.number == number)
        .options(LINES_WHEN_USED)
    )
    if permit is None:
        raise permit_not_found(issuing_party, number)
    return permit


def check_may_see(permit: Permit, actor: Principal) -> None:
    """Only the two Parties of a permit (issuer, exporter, importer) read its ledger; anyone
    else gets the very answer a missing permit gives."""
    parties = {permit.issuing_party, permit.exporter_party, permit.importer_party}
    if actor.party not in parties:
        raise permit_not_found(permit.issuing_party, permit.number)


def permit_read(
    session: Session,
    *,
    party: str,
    number: str,
    actor: Principal,
    request: RequestContext | None,
    read: str,
) -> Permit:
    """The permit whose ``read`` (its ledger, its endorsements) ``actor`` is shown, audited as
    a lookup (``permit.lookup``, refusals too; the caller commits them): a permit's ledger
    and endorsements tell as much as its lookup, and every access to a permit must be
    attributable."""

    def find() -> Permit:
        permit = find_permit(session, party, number)
        check_may_see(permit, actor)
        return permit

    detail: dict[str, object] = {"read": read}
    permit = find_audited(
        session,
        party=party,
        number=number,
        principal=actor,
        request=request,
        find=find,
        detail=detail,
    )
    record_lookup(
        session,
        permit,
        principal=actor,
        request=request,
        payload_sha256=permit.signed_sha256,
        detail=detail,
    )
    return permit


def endorsement_read(
    session: Session,
    *,
    party: str,
    number: str,
    endorsement_id: str,
    actor: Principal,
    request: RequestContext | None,
) -> Endorsement:
    """One endorsement's signed document shown to ``actor``, audited as ``permit_read`` is,
    with the document's hash."""

    def find() -> tuple[Permit, Endorsement]:
        permit = find_permit(session, party, number)
        check_may_see(permit, actor)
        endorsement = session.scalar(
            select(Endorsement).where(
                Endorsement.permit_id == permit.id, Endorsement.endorsement_id == endorsement_id
            )
        )
        if endorsement is None:
            raise EpixError.of(
                "EPIX-REQ-005", f"No endorsement {endorsement_id} on this permit.", "endorsement_id"
            )
        return permit, endorsement

    detail: dict[str, object] = {"read": "endorsement", "endorsement_id": endorsement_id}
    permit, endorsement = find_audited(
        session,
        party=party,
        number=number,
        principal=actor,
        request=request,
        find=find,
        detail=detail,
    )
    record_lookup(
        session,
        permit,
        principal=actor,
        request=request,
        payload_sha256=endorsement.document_sha256,
        detail=detail,
    )
    return endorsement


# A late endorsement (made before the last change of status) leaves these as they are.
KEPT_STATUSES = (CANCELLED, REPLACED, "used")


def check_usable(
    state: PermitState, side: Side, actor: Principal, at: datetime | None = None
) -> None:
    """Refuse the wrong Party and every permit state that cannot take this side's step.

    Validity is judged at ``at`` (default: now), the moment the endorsement was made.
    """
    permit = state.permit
    at = at or state.at
    entitled = permit.exporter_party if side is Side.EXPORT else permit.importer_party
    if actor.party != entitled:
        role = "exporting" if side is Side.EXPORT else "importing"
        raise EpixError.of(
            "EPIX-STATE-006",
            f"Only customs of the {role} Party ({entitled}) may record the {side.value} side "
            f"of permit {permit.number}; you act for {actor.party}.",
            "side",
        )
    # An inspection made before the permit's last change of status (the issuer cancelled or
    # replaced it, or the other side's inspection used it up) happened all the same: arriving
    # late because delivery retried, it is recorded, and the status stays.
    made_before = permit.status_changed_at is not None and at < permit.status_changed_at
    if permit.status == CANCELLED and not made_before:
        raise EpixError.of(
            "EPIX-STATE-003", f"Permit {permit.number} was cancelled by its issuer.", "permit"
        )
    if permit.status == REPLACED and not made_before:
        raise EpixError.of(
            "EPIX-STATE-004",
            f"Permit {permit.number} was replaced; the replacement must be presented.",
            "permit",
        )
    used_by = state.endorsements.get(side)
    if (permit.status == "used" and not made_before) or used_by is not None:
        raise EpixError.of(
            "EPIX-STATE-005",
            f"Permit {permit.number} was already "
            + (f"{side.value}-endorsed ({used_by.endorsement_id})" if used_by else "used")
            + "; a permit covers one consignment (Art. VI.5).",
            "permit",
        )
    if permit.valid_from is not None and permit.valid_from > at:
        raise EpixError.of(
            "EPIX-STATE-002",
            f"Permit {permit.number} is valid only from {permit.valid_from.isoformat()}.",
            "permit",
        )
    if is_expired(permit, at):
        assert permit.valid_until is not None
        raise EpixError.of(
            "EPIX-STATE-001",
            f"Permit {permit.number} expired on {permit.valid_until.isoformat()}.",
            "permit",
        )


KNOWN_LINES_NAMED = 20


def known_lines(line_ids: Iterable[str]) -> str:
    """The permit's line ids for a message: at most ``KNOWN_LINES_NAMED``, then how many more.

    A message per unknown line names them, so an unbounded list would cost (unknown lines) x
    (permit lines) in memory: 10,000 unknown lines against a 1,000-line permit made 150 MB.
    """
    ordered = sorted(line_ids)
    if not ordered:
        return "none"
    named = ", ".join(ordered[:KNOWN_LINES_NAMED])
    more = len(ordered) - KNOWN_LINES_NAMED
    return f"{named} and {more} more" if more > 0 else named


def check_lines(
    state: PermitState,
    side: Side,
    lines: Sequence[LineInput],
    exclude: Reservation | None = None,
) -> list[tuple[PermitLine, Decimal, str]]:
    """Each requested line against the permit: known, once, same unit, within what remains.

    Every problem is reported at once, each at ``lines/<index>/<field>``.
    """
    if not lines:
        raise EpixError.of("EPIX-REQ-004", "Give at least one line with its quantity.", "lines")
    by_id = {line.line_id: line for line in state.permit.lines}
    known: str | None = None  # the permit's line ids, named once in every EPIX-QTY-003
    findings: list[Finding] = []
    checked: list[tuple[PermitLine, Decimal, str]] = []
    seen: set[str] = set()
    remaining_by_line = state.remaining_by_line(side, exclude)  # once, not once per line
    for index, item in enumerate(lines):
        where = f"lines/{index}"
        line = by_id.get(item.line_id)
        if line is None:
            known = known if known is not None else known_lines(by_id)
            findings.append(
                Finding(
                    "EPIX-QTY-003",
                    f"Permit {state.permit.number} has no line {item.line_id!r} (lines: {known}).",
                    f"{where}/line_id",
                )
            )
            continue
        if item.line_id in seen:
            findings.append(
                Finding("EPIX-QTY-007", f"Line {item.line_id!r} is given twice.", where)
            )
            continue
        seen.add(item.line_id)
        try:
            quantity = parse_quantity(item.quantity, f"{where}/quantity")
        except EpixError as exc:
            findings.extend(exc.findings)
            continue
        unit = item.unit.strip().upper()
        if unit != line_unit(line):
            findings.append(
                Finding(
                    "EPIX-QTY-002",
                    f"Line {item.line_id} is in {line_unit(line)}, not {item.unit!r}.",
                    f"{where}/unit",
                )
            )
            continue
        remaining = remaining_by_line[line.id]
        if quantity > remaining:
            findings.append(
                Finding(
                    "EPIX-QTY-001",
                    f"Line {item.line_id}: {quantity} {unit} asked, {remaining} {unit} remain "
                    f"for the {side.value} side (permitted {line.permitted_quantity}).",
                    f"{where}/quantity",
                )
            )
            continue
        checked.append((line, quantity, unit))
    if findings:
        raise EpixError(findings)
    return checked


def _check_text(value: str, name: str, limit: int = 200) -> str:
    text = value.strip()
    if not text or len(text) > limit:
        raise EpixError.of("EPIX-REQ-004", f"{name} must be 1 to {limit} characters.", name)
    return xml_text(text, name)  # it goes into the signed endorsement document


def _expire_due(session: Session, state: PermitState, actor: Principal) -> None:
    """Mark reservations whose time ran out as expired (they already no longer count)."""
    due = session.scalars(
        select(Reservation).where(
            Reservation.permit_id == state.permit.id,
            Reservation.status == ReservationStatus.ACTIVE.value,
            Reservation.expires_at <= state.at,
        )
    ).all()
    for reservation in due:
        reservation.status = ReservationStatus.EXPIRED.value
        reservation.closed_at = reservation.expires_at
        record_event(
            session,
            action="reservation.expire",
            outcome="ok",
            party=state.permit.issuing_party,
            message_id=reservation.reservation_id,
            permit_number=state.permit.number,
            detail={
                "declaration_reference": reservation.declaration_reference,
                "expired_at": reservation.expires_at.isoformat(),
                "noticed_by": actor.username,
            },
        )


def lock_visible_permit(
    session: Session, issuing_party: str, number: str, actor: Principal
) -> Permit:
    """The permit row, locked until the transaction ends, or EPIX-STATE-007.

    A permit the caller cannot look up (another Party's, behind its issuer's security token)
    answers like a missing one, before any check could tell it exists.
    """
    permit = lock_permit(session, issuing_party, number)
    if not may_look_up(permit, actor, None):
        raise permit_not_found(issuing_party, number)
    return permit


def _locked_state(
    session: Session, issuing_party: str, number: str, actor: Principal
) -> PermitState:
    permit = lock_visible_permit(session, issuing_party, number, actor)
    state = load_state(session, permit)
    _expire_due(session, state, actor)
    return state


def reserve(
    session: Session,
    *,
    issuing_party: str,
    number: str,
    side: Side,
    declaration_reference: str,
    lines: Sequence[LineInput],
    ttl: timedelta,
    actor: Principal,
    request: RequestContext | None = None,
) -> Reservation:
    """Hold quantities for a customs declaration until confirmed, released or ``ttl`` passes."""
    declaration_reference = _check_text(declaration_reference, "declaration_reference")
    state = _locked_state(session, issuing_party, number, actor)
    check_usable(state, side, actor)
    checked = check_lines(state, side, lines)
    reservation = Reservation(
        reservation_id=str(uuid.uuid4()),
        permit_id=state.permit.id,
        side=side.value,
        party=actor.party,
        declaration_reference=declaration_reference,
        status=ReservationStatus.ACTIVE.value,
        expires_at=state.at + ttl,
        created_at=state.at,
        created_by=actor.username,
        lines=[
            ReservationLine(permit_line_id=line.id, quantity=quantity, unit=unit)
            for line, quantity, unit in checked
        ],
    )
    session.add(reservation)
    session.flush()
    record_event(
        session,
        action="reservation.create",
        outcome="ok",
        actor=actor,
        party=state.permit.issuing_party,
        message_id=reservation.reservation_id,
        permit_number=state.permit.number,
        request=request,
        detail={
            "side": side.value,
            "declaration_reference": declaration_reference,
            "expires_at": reservation.expires_at.isoformat(),
            "lines": {line.line_id: str(quantity) for line, quantity, _ in checked},
        },
    )
    return reservation


def _open_reservation(
    state: PermitState, session: Session, reservation_id: str, actor: Principal
) -> Reservation:
    reservation = session.scalar(
        select(Reservation)
        .where(
            Reservation.reservation_id == reservation_id,
            Reservation.permit_id == state.permit.id,
        )
        # Its lines once it is found to be the caller's Party's (as LINES_WHEN_USED).
        .options(lazyload(Reservation.lines))
        .execution_options(populate_existing=True)
    )
    if reservation is None or reservation.party != actor.party:
        raise EpixError.of(
            "EPIX-QTY-005",
            f"No reservation {reservation_id} on permit {state.permit.number} for your Party.",
            "reservation_id",
        )
    status = reservation.status_at(state.at)
    if status is ReservationStatus.EXPIRED:
        raise EpixError.of(
            "EPIX-QTY-005",
            f"Reservation {reservation_id} expired at {reservation.expires_at.isoformat()}.",
            "reservation_id",
        )
    if status is not ReservationStatus.ACTIVE:
        raise EpixError.of(
            "EPIX-QTY-008",
            f"Reservation {reservation_id} was already {status.value}.",
            "reservation_id",
        )
    return reservation


def release(
    session: Session,
    *,
    issuing_party: str,
    number: str,
    reservation_id: str,
    actor: Principal,
    request: RequestContext | None = None,
) -> Reservation:
    """Give the held quantities back."""
    state = _locked_state(session, issuing_party, number, actor)
    reservation = _open_reservation(state, session, reservation_id, actor)
    reservation.status = ReservationStatus.RELEASED.value
    reservation.closed_at = state.at
    reservation.closed_by = actor.username
    record_event(
        session,
        action="reservation.release",
        outcome="ok",
        actor=actor,
        party=state.permit.issuing_party,
        message_id=reservation.reservation_id,
        permit_number=state.permit.number,
        request=request,
        detail={"declaration_reference": reservation.declaration_reference},
    )
    return reservation


def confirm(
    session: Session,
    *,
    issuing_party: str,
    number: str,
    reservation_id: str,
    details: BorderDetails,
    lines: Sequence[LineInput] | None,
    signer: Signer,
    signed_by: str,
    actor: Principal,
    request: RequestContext | None = None,
    announce: Announce | None = None,
    give_up_seconds: int = DEFAULT_GIVE_UP_SECONDS,
) -> SignedEndorsement:
    """Turn a reservation into the endorsement; ``lines`` default to the reserved quantities.

    The actual quantities may differ from the reserved ones but are checked against what
    remains with this reservation's own hold given back.
    """
    state = _locked_state(session, issuing_party, number, actor)
    reservation = _open_reservation(state, session, reservation_id, actor)
    side = Side(reservation.side)
    if lines is None:
        by_pk = {line.id: line for line in state.permit.lines}
        lines = [
            LineInput(by_pk[item.permit_line_id].line_id, item.quantity, item.unit)
            for item in reservation.lines
        ]
    result = _endorse_locked(
        session,
        state,
        side=side,
        details=details,
        lines=lines,
        declaration_reference=reservation.declaration_reference,
        reservation=reservation,
        signer=signer,
        signed_by=signed_by,
        actor=actor,
        request=request,
        announce=announce,
        give_up_seconds=give_up_seconds,
    )
    return result


def endorse(
    session: Session,
    *,
    issuing_party: str,
    number: str,
    side: Side,
    details: BorderDetails,
    lines: Sequence[LineInput],
    declaration_reference: str | None,
    signer: Signer,
    signed_by: str,
    actor: Principal,
    request: RequestContext | None = None,
    announce: Announce | None = None,
    give_up_seconds: int = DEFAULT_GIVE_UP_SECONDS,
) -> SignedEndorsement:
    """Record the consignment at the border directly, without a prior reservation."""
    if declaration_reference is not None:
        declaration_reference = _check_text(declaration_reference, "declaration_reference")
    state = _locked_state(session, issuing_party, number, actor)
    return _endorse_locked(
        session,
        state,
        side=side,
        details=details,
        lines=lines,
        declaration_reference=declaration_reference,
        reservation=None,
        signer=signer,
        signed_by=signed_by,
        actor=actor,
        request=request,
        announce=announce,
        give_up_seconds=give_up_seconds,
    )


def _check_border(state: PermitState, details: BorderDetails) -> BorderDetails:
    """Port, officer, transport document and date, normalised; refusals name the field.

    The date may be neither in the future nor before the permit's validity starts.
    """
    port = normalise_port(details.port)
    officer = _check_text(details.officer, "officer")
    transport_document = _check_text(details.transport_document, "transport_document")
    if details.endorsed_on > state.at.date() + timedelta(days=1):
        # One day of slack: the officer's local date may be ahead of UTC.
        raise EpixError.of(
            "EPIX-QTY-009",
            f"The endorsement date {details.endorsed_on.isoformat()} is in the future.",
            "date",
        )
    starts = state.permit.valid_from
    if starts is not None and details.endorsed_on < starts.date() - timedelta(days=1):
        # The same day of slack the other way: the officer's local date may be behind UTC.
        raise EpixError.of(
            "EPIX-QTY-010",
            f"The endorsement date {details.endorsed_on.isoformat()} is before permit "
            f"{state.permit.number} is valid (from {starts.date().isoformat()}).",
            "date",
        )
    return BorderDetails(port, details.endorsed_on, officer, transport_document)


def _endorse_locked(
    session: Session,
    state: PermitState,
    *,
    side: Side,
    details: BorderDetails,
    lines: Sequence[LineInput],
    declaration_reference: str | None,
    reservation: Reservation | None,
    signer: Signer,
    signed_by: str,
    actor: Principal,
    request: RequestContext | None,
    announce: Announce | None,
    give_up_seconds: int,
) -> SignedEndorsement:
    permit = state.permit
    check_usable(state, side, actor)
    border = _check_border(state, details)
    checked = check_lines(state, side, lines, exclude=reservation)
    document = EndorsementDocument(
        endorsement_id=str(uuid.uuid4()),
        side=side,
        issuing_party=permit.issuing_party,
        permit_number=permit.number,
        permit_sha256=permit.signed_sha256,
        endorsing_party=actor.party,
        authority=actor.authority or f"{actor.party} customs",
        officer=str(border.officer),
        port=str(border.port),
        endorsed_on=border.endorsed_on,
        transport_document=border.transport_document,
        declaration_reference=declaration_reference,
        issued_at=state.at,
        lines=tuple(EndorsedLine(line.line_id, quantity, unit) for line, quantity, unit in checked),
    )
    return _store(
        session,
        state,
        document,
        signer(write_endorsement(document)),
        checked=checked,
        reservation=reservation,
        signed_by=signed_by,
        actor=actor,
        request=request,
        announce=announce,
        give_up_seconds=give_up_seconds,
    )


def forward_to(permit: Permit, side: Side, actor: Principal) -> list[str]:
    """Where an endorsement made here goes: always to the permit's issuer; an export
    endorsement also to the importing Party (unless it is the issuer or made it), whose node
    holds its own copy of the ledger and must limit the import inspection to what was
    exported, not to the permitted quantity."""
    destinations = [permit.issuing_party]
    importer = permit.importer_party
    if side is Side.EXPORT and importer not in (permit.issuing_party, actor.party):
        destinations.append(importer)
    return destinations


def _store(
    session: Session,
    state: PermitState,
    document: EndorsementDocument,
    signed: bytes,
    *,
    checked: list[tuple[PermitLine, Decimal, str]],
    reservation: Reservation | None,
    signed_by: str,
    actor: Principal,
    request: RequestContext | None,
    announce: Announce | None,
    give_up_seconds: int,
    forward: bool = True,
) -> SignedEndorsement:
    """Write the endorsement, move the permit's status, queue it for the issuer (unless it
    came from the issuer's peer already), tell the watchers, audit it (when made here)."""
    permit = state.permit
    side = document.side
    port, officer, transport_document = (
        document.port,
        document.officer,
        document.transport_document,
    )
    endorsement = Endorsement(
        endorsement_id=document.endorsement_id,
        permit_id=permit.id,
        side=side.value,
        endorsing_party=document.endorsing_party,
        authority=document.authority,
        officer=officer,
        port=port,
        endorsed_on=document.endorsed_on,
        transport_document=transport_document,
        declaration_reference=document.declaration_reference,
        reservation_id=reservation.id if reservation else None,
        document=signed,
        document_sha256=hashlib.sha256(signed).hexdigest(),
        signed_by=signed_by,
        created_at=state.at,
        created_by=actor.username,
        lines=[
            EndorsementLine(permit_line_id=line.id, quantity=quantity, unit=unit)
            for line, quantity, unit in checked
        ],
    )
    session.add(endorsement)
    _close_side_reservations(state, side, reservation, actor)
    previous_status = permit.status
    if previous_status not in KEPT_STATUSES:
        permit.status = "used" if side is Side.IMPORT else "endorsed"
        permit.status_changed_at = state.at
        permit.status_reason = (
            f"{side.value} endorsement {document.endorsement_id} by {actor.party} at {port}"
        )
    session.flush()
    for destination in forward_to(permit, side, actor) if forward else ():
        enqueue(
            session,
            kind=OutboxKind.ENDORSEMENT,
            destination_party=destination,
            payload=signed,
            message_id=document.endorsement_id,
            content_type=ENDORSEMENT_CONTENT_TYPE,
            headers={"X-EPIX-Document-Type": "endorsement"},
            sender_party=actor.party,
            order_key=permit_order_key(permit.issuing_party, permit.number),
            give_up_seconds=give_up_seconds,
        )
    told: list[str] = []
    # An endorsement the issuer's own customs made came from the issuer's node, which told
    # the permit's watchers already: this copy of the ledger does not tell them again.
    announced_by_issuer = not forward and actor.party == permit.issuing_party
    if announce is not None and permit.status != previous_status and not announced_by_issuer:
        # The issuer gets the endorsement itself, the endorsing Party knows: tell the rest.
        told = list(announce(session, permit, actor, {actor.party}))
    ledger_entry: dict[str, object] = {
        "side": side.value,
        "port": port,
        "officer": officer,
        "transport_document": transport_document,
        "reservation_id": reservation.reservation_id if reservation else None,
        "permit_sha256": permit.signed_sha256,
        "status": {"from": previous_status, "to": permit.status},
        "signed_by": signed_by,
        "lines": {line.line_id: str(quantity) for line, quantity, _ in checked},
        "notified": told,
    }
    if forward:  # made here (a received one is audited by its receipt)
        record_event(
            session,
            action="endorsement.record",
            outcome="ok",
            actor=actor,
            party=permit.issuing_party,
            message_id=document.endorsement_id,
            permit_number=permit.number,
            request=request,
            payload=signed,
            permit_valid_until=permit.valid_until.date() if permit.valid_until else None,
            detail=ledger_entry,
        )
    return SignedEndorsement(endorsement=endorsement, document=signed, ledger_entry=ledger_entry)


def record_signed(
    session: Session,
    *,
    issuing_party: str,
    number: str,
    data: bytes,
    trust: TrustStore,
    actor: Principal,
    request: RequestContext | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    announce: Announce | None = None,
    give_up_seconds: int = DEFAULT_GIVE_UP_SECONDS,
) -> SignedEndorsement:
    """Accept an endorsement the customs authority signed with its own registered key.

    The document is parsed, schema-checked and verified against the registry as the claimed
    endorsing Party's ``customs`` role before anything in it is trusted; its content then goes
    through the same checks as a node-signed endorsement and its bytes are stored and
    forwarded unchanged. A declaration reference naming one of the Party's active reservations
    on that side confirms it. Sending the same document again returns the stored endorsement.
    """
    root = parse_xml(data, max_bytes=max_bytes, max_depth=max_depth)
    claimed = read_endorsement(root)
    if claimed.endorsing_party != actor.party:
        raise EpixError.of(
            "EPIX-AUTH-005",
            f"The endorsement is by {claimed.endorsing_party}; you act for {actor.party}.",
            "EndorsingParty",
        )
    verdict = verify_document(data, party=claimed.endorsing_party, role=CUSTOMS_ROLE, trust=trust)
    if not verdict.valid or verdict.signed_element is None:
        raise EpixError([f for f in verdict.findings if f.severity is Severity.ERROR])
    document = read_endorsement(verdict.signed_element)
    if (document.issuing_party, document.permit_number) != (issuing_party, number):
        raise EpixError.of(
            "EPIX-REQ-004",
            f"The document endorses {document.issuing_party} {document.permit_number}, "
            f"not {issuing_party} {number}.",
            "Permit",
        )
    return _record_document(
        session,
        document,
        data,
        signed_by="authority",
        actor=actor,
        request=request,
        announce=announce,
        give_up_seconds=give_up_seconds,
        forward=True,
    )


def record_received(
    session: Session,
    *,
    document: EndorsementDocument,
    data: bytes,
    signed_by: str,
    actor: Principal,
    announce: Announce | None = None,
    give_up_seconds: int = DEFAULT_GIVE_UP_SECONDS,
) -> SignedEndorsement:
    """Enter an endorsement that arrived from the endorsing Party's node into this node's copy
    of the ledger (the issuer's view of its permit), with the same checks as a local one.

    ``document`` must come from a verified signature over ``data``. It is not forwarded again:
    it came from the node that forwards it. Nor is it audited here: the caller's receipt event
    records the result's ``ledger_entry``. Raises ``EpixError`` when the permit is unknown
    here or the ledger refuses; the caller keeps the message either way.
    """
    return _record_document(
        session,
        document,
        data,
        signed_by=signed_by,
        actor=actor,
        request=None,
        announce=announce,
        give_up_seconds=give_up_seconds,
        forward=False,
    )


def _record_document(
    session: Session,
    document: EndorsementDocument,
    data: bytes,
    *,
    signed_by: str,
    actor: Principal,
    request: RequestContext | None,
    announce: Announce | None,
    give_up_seconds: int,
    forward: bool,
) -> SignedEndorsement:
    """A signed endorsement document through the ledger checks; the same bytes twice is one."""
    number = document.permit_number
    state = _locked_state(session, document.issuing_party, number, actor)
    digest = hashlib.sha256(data).hexdigest()
    existing = session.scalar(
        select(Endorsement).where(Endorsement.endorsement_id == document.endorsement_id)
    )
    if existing is not None:
        if existing.document_sha256 == digest:
            return SignedEndorsement(existing, existing.document)
        raise EpixError.of(
            "EPIX-MSG-001",
            f"Endorsement {document.endorsement_id} was already recorded with other bytes.",
            "ID",
        )
    if document.permit_sha256 != state.permit.signed_sha256:
        raise EpixError.of(
            "EPIX-STATE-009",
            f"The endorsement names permit bytes {document.permit_sha256}; this node holds "
            f"{state.permit.signed_sha256} for {number}.",
            "Permit/SHA256",
        )
    # An endorsement from the endorsing Party's node was made when it was signed, which may
    # be days before it arrives (delivery retries): its permit must have been valid then (not
    # later than now, whatever the document says). One made here is made now.
    made_at = state.at if forward else min(document.issued_at, state.at)
    check_usable(state, document.side, actor, made_at)
    border = _check_border(
        state,
        BorderDetails(
            document.port, document.endorsed_on, document.officer, document.transport_document
        ),
    )
    if border.port != document.port:
        raise EpixError.of("EPIX-QTY-006", f"{document.port!r} is not a UN/LOCODE.", "Port")
    reservation = next(
        (
            held
            for held in state.active_reservations
            if held.side == document.side.value
            and held.party == actor.party
            and held.declaration_reference == document.declaration_reference
        ),
        None,
    )
    checked = check_lines(
        state,
        document.side,
        [LineInput(line.line_id, line.quantity, line.unit) for line in document.lines],
        exclude=reservation,
    )
    return _store(
        session,
        state,
        document,
        data,
        checked=checked,
        reservation=reservation,
        signed_by=signed_by,
        actor=actor,
        request=request,
        announce=announce,
        give_up_seconds=give_up_seconds,
        forward=forward,
    )


def _close_side_reservations(
    state: PermitState, side: Side, confirmed: Reservation | None, actor: Principal
) -> None:
    """The confirmed hold becomes the endorsement; other holds on this side lapse with it.

    Once a side has endorsed, it is closed (one consignment per permit), so any other hold
    on it could never be confirmed; it is released rather than left to expire.
    """
    for reservation in state.active_reservations:
        if reservation.side != side.value:
            continue
        closing = reservation is confirmed
        reservation.status = (
            ReservationStatus.CONFIRMED.value if closing else ReservationStatus.RELEASED.value
        )
        reservation.closed_at = state.at
        reservation.closed_by = actor.username


def endorsements_of(session: Session, permit: Permit) -> list[Endorsement]:
    """The permit's endorsements, oldest first."""
    return list(
        session.scalars(
            select(Endorsement).where(Endorsement.permit_id == permit.id).order_by(Endorsement.id)
        )
    )


def _permit_of(session: Session, permit_id: int) -> Permit:
    permit = session.get(Permit, permit_id)
    if permit is None:  # permit rows are never deleted
        raise LookupError(f"permit row {permit_id} is gone")
    return permit


def describe_reservation(
    session: Session, reservation: Reservation, at: datetime
) -> dict[str, object]:
    """A reservation as JSON values, with its status as seen at ``at``."""
    permit = _permit_of(session, reservation.permit_id)
    by_pk = {line.id: line.line_id for line in permit.lines}
    return {
        "reservation_id": reservation.reservation_id,
        "permit": {"issuing_party": permit.issuing_party, "number": permit.number},
        "side": reservation.side,
        "party": reservation.party,
        "declaration_reference": reservation.declaration_reference,
        "status": reservation.status_at(at).value,
        "expires_at": reservation.expires_at.isoformat(),
        "created_at": reservation.created_at.isoformat(),
        "created_by": reservation.created_by,
        "lines": [
            {
                "line_id": by_pk[item.permit_line_id],
                "quantity": format(item.quantity.normalize(), "f"),
                "unit": item.unit,
            }
            for item in reservation.lines
        ],
    }


def forwarding(session: Session, endorsement: Endorsement) -> list[dict[str, object]]:
    """Each Party this node sent the endorsement to and how far it got: pending (with the
    last retryable error, when it is tried next and when given up: EPIX-DLV-014 while the
    importer's node does not hold the permit yet), delivered (with the status and codes of the
    far end's receipt, e.g. EPIX-QTY-011 when the issuer's ledger did not record it) or failed
    (given up or refused, with its code). Empty for one that came from another node."""
    rows = session.scalars(
        select(OutboxMessage)
        .where(
            OutboxMessage.kind == OutboxKind.ENDORSEMENT.value,
            OutboxMessage.message_id == endorsement.endorsement_id,
            OutboxMessage.sender_party == endorsement.endorsing_party,
        )
        .order_by(OutboxMessage.id)
    )
    result: list[dict[str, object]] = []
    for row in rows:
        status, codes = receipt_outcome(row.receipt) if row.receipt else (None, [])
        result.append(
            {
                "to": row.destination_party,
                "state": row.state,
                **progress(row),
                "receipt_status": status,
                "receipt_codes": codes,
            }
        )
    return result


def describe_endorsement(session: Session, endorsement: Endorsement) -> dict[str, object]:
    """An endorsement as JSON values (the signed document itself is served separately)."""
    permit = _permit_of(session, endorsement.permit_id)
    by_pk = {line.id: line.line_id for line in permit.lines}
    return {
        "endorsement_id": endorsement.endorsement_id,
        "permit": {
            "issuing_party": permit.issuing_party,
            "number": permit.number,
            "sha256": permit.signed_sha256,
            "status": permit.status,
        },
        "side": endorsement.side,
        "endorsing_party": endorsement.endorsing_party,
        "authority": endorsement.authority,
        "officer": endorsement.officer,
        "port": endorsement.port,
        "date": endorsement.endorsed_on.isoformat(),
        "transport_document": endorsement.transport_document,
        "declaration_reference": endorsement.declaration_reference,
        "document_sha256": endorsement.document_sha256,
        "signed_by": endorsement.signed_by,
        "created_at": endorsement.created_at.isoformat(),
        "forwarding": forwarding(session, endorsement),
        "lines": [
            {
                "line_id": by_pk[item.permit_line_id],
                "quantity": format(item.quantity.normalize(), "f"),
                "unit": item.unit,
            }
            for item in endorsement.lines
        ],
    }
