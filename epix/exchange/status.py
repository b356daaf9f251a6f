"""Status changes: cancel and replace by the issuing Management Authority, and the endorsed or
used status a border endorsement gives a permit.

The signed permit bytes are never touched; the permit row's status moves and a status document
({urn:epix:status:1}, signed by the node) goes to every Party that received, pulled or looked
the permit up — into its inbox here, or through the outbox to its own node.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass

from lxml import etree
from sqlalchemy import select
from sqlalchemy.orm import Session

from epix.audit.context import RequestContext
from epix.audit.service import record_event
from epix.auth.principal import Principal, Role
from epix.auth.scoping import ensure_own_party, ensure_role
from epix.db.base import utcnow
from epix.delivery import outbox
from epix.delivery.models import OutboxKind
from epix.delivery.webhooks import publish_event
from epix.errors import EpixError
from epix.exchange.models import Permit, PermitWatcher
from epix.exchange.node_identity import NodeIdentity, node_identity
from epix.exchange.notifications import notify
from epix.exchange.repository import lock_permits, permit_not_found
from epix.exchange.service import is_hosted
from epix.settings import Settings
from epix.signatures.sign import sign_document
from epix.xml import xml_text
from epix.xml.namespaces import EPIX_STATUS

CANCELLED = "cancelled"
REPLACED = "replaced"
# States from which the issuer may still withdraw a permit; a used one has done its work.
_CHANGEABLE = frozenset({"issued", "endorsed"})
# A replacement starts with its full quantities, so only a permit nothing was exported on yet
# may be replaced: an export-endorsed one replaced would let the consignment leave twice.
_REPLACEABLE = frozenset({"issued"})


@dataclass(frozen=True, slots=True)
class StatusChange:
    """The outcome: the permit's new status and who was told."""

    permit: Permit
    status: str
    document: bytes
    notified: tuple[str, ...]


def status_xml(
    permit: Permit,
    status: str,
    principal: Principal,
    reason: str | None,
    replacement: Permit | None,
) -> bytes:
    """The unsigned status document."""
    root = etree.Element(f"{{{EPIX_STATUS}}}StatusChange", nsmap={None: EPIX_STATUS})  # type: ignore[dict-item]  # lxml: None = default ns
    root.set("version", "1")

    def add(parent: etree._Element, name: str, value: str | None) -> etree._Element:
        element = etree.SubElement(parent, f"{{{EPIX_STATUS}}}{name}")
        element.text = value
        return element

    def reference(name: str, target: Permit) -> None:
        element = etree.SubElement(root, f"{{{EPIX_STATUS}}}{name}")
        add(element, "IssuingParty", target.issuing_party)
        add(element, "PermitNumber", target.number)
        add(element, "DocumentSHA256", target.signed_sha256)

    reference("Permit", permit)
    add(root, "Status", status)
    if replacement is not None:
        reference("ReplacedBy", replacement)
    if reason:
        add(root, "Reason", reason)
    add(root, "ChangedAt", utcnow().isoformat(timespec="milliseconds"))
    changed_by = add(root, "ChangedBy", None)
    add(changed_by, "Username", principal.username)
    if principal.authority:
        add(changed_by, "Authority", principal.authority)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def watchers(session: Session, permit: Permit) -> list[str]:
    """Every Party to tell: the destination and whoever pulled or looked the permit up."""
    parties = set(
        session.scalars(select(PermitWatcher.party).where(PermitWatcher.permit_id == permit.id))
    )
    parties.add(permit.recipient_party)
    parties.discard(permit.issuing_party)
    return sorted(parties)


def announce(
    session: Session,
    *,
    permit: Permit,
    document: bytes,
    settings: Settings,
    exclude: Collection[str] = (),
) -> list[str]:
    """Send a signed status document to every watcher of ``permit`` but ``exclude``.

    A watcher hosted here gets it in its inbox (and a ``status.changed`` webhook); any other
    gets it through the outbox at its own node. Returns the Parties told.
    """
    told = [party for party in watchers(session, permit) if party not in exclude]
    message_id = f"status-{uuid.uuid4().hex}"
    for target in told:
        if is_hosted(target, settings):
            notify(
                session,
                party=target,
                kind="status",
                subject=f"Permit {permit.number} of {permit.issuing_party} {permit.status}",
                body=document,
            )
            publish_event(
                session,
                party=target,
                event="status.changed",
                event_id=message_id,
                data={
                    "issuing_party": permit.issuing_party,
                    "number": permit.number,
                    "status": permit.status,
                    "reason": permit.status_reason,
                },
                give_up_seconds=settings.outbox_give_up_seconds,
            )
        else:
            outbox.enqueue(
                session,
                kind=OutboxKind.STATUS_CHANGE,
                destination_party=target,
                payload=document,
                message_id=message_id,
                sender_party=settings.node_party,
                headers={"X-EPIX-Document-Type": "status"},
                order_key=outbox.permit_order_key(permit.issuing_party, permit.number),
                give_up_seconds=settings.outbox_give_up_seconds,
            )
    return told


@dataclass(frozen=True, slots=True)
class StatusAnnouncer:
    """Tells a permit's watchers that it moved to a status nobody here chose by hand (endorsed
    or used at a border): the same node-signed status document as a cancellation."""

    settings: Settings
    identity: NodeIdentity

    def __call__(
        self, session: Session, permit: Permit, actor: Principal, exclude: Collection[str]
    ) -> list[str]:
        document = sign_document(
            status_xml(permit, permit.status, actor, permit.status_reason, None),
            self.identity.key_pem,
            self.identity.cert_pem,
        )
        return announce(
            session, permit=permit, document=document, settings=self.settings, exclude=exclude
        )


def status_announcer(settings: Settings) -> StatusAnnouncer:
    """The announcer of this node, signing with its node key."""
    return StatusAnnouncer(settings, node_identity(settings.data_dir, settings.node_party))


def check_replacement(permit: Permit, replacement: Permit) -> None:
    """The replacing permit must be usable where the replaced one was: still ``issued`` (not
    cancelled, replaced, endorsed or used, so no chain can close on itself), not expired, and
    for the same destination (its watchers are told to present it instead). EPIX-STATE-010."""
    problem: str | None = None
    if replacement.status != "issued":
        problem = f"is {replacement.status}"
    elif replacement.valid_until is not None and replacement.valid_until < utcnow():
        problem = f"expired on {replacement.valid_until.isoformat()}"
    elif replacement.recipient_party != permit.recipient_party:
        problem = (
            f"goes to {replacement.recipient_party}, not to {permit.recipient_party} like "
            f"permit {permit.number}"
        )
    if problem is not None:
        raise EpixError.of(
            "EPIX-STATE-010",
            f"Permit {replacement.number} {problem}; it cannot replace permit {permit.number}.",
            "replaced_by",
        )


def change_status(
    session: Session,
    *,
    party: str,
    number: str,
    status: str,
    principal: Principal,
    settings: Settings,
    identity: NodeIdentity,
    reason: str | None = None,
    replacement_number: str | None = None,
    request: RequestContext | None = None,
) -> StatusChange:
    """Cancel or replace a permit of the caller's own Party, tell its watchers, audit it."""
    ensure_role(principal, Role.MANAGEMENT_AUTHORITY)
    ensure_own_party(principal, party, "party")
    if reason is not None:
        xml_text(reason, "reason")  # it goes into the signed status document
    # The replacing permit is locked with the replaced one: checked unlocked, it could be
    # cancelled, replaced or endorsed by a transaction committing just before this one.
    numbers = {number}
    if status == REPLACED and replacement_number:
        numbers.add(replacement_number)
    locked = lock_permits(session, party, numbers)
    permit = locked.get(number)
    if permit is None:
        raise permit_not_found(party, number)
    replacement: Permit | None = None
    if status == REPLACED:
        if not replacement_number or replacement_number == number:
            raise EpixError.of(
                "EPIX-REQ-004",
                "Name the replacing permit's number (a different, already submitted permit).",
                "replaced_by",
            )
        replacement = locked.get(replacement_number)
        if replacement is None:
            raise EpixError.of(
                "EPIX-STATE-007",
                f"No permit {replacement_number!r} issued by {party} is known here; submit "
                "the replacing permit first.",
                "replaced_by",
            )
        check_replacement(permit, replacement)
    if permit.status not in _CHANGEABLE:
        raise EpixError.of(
            "EPIX-STATE-008",
            f"Permit {number} is {permit.status}; it cannot be {status} now.",
            "status",
        )
    if status == REPLACED and permit.status not in _REPLACEABLE:
        raise EpixError.of(
            "EPIX-STATE-008",
            f"Permit {number} is {permit.status}: its export is already recorded, and a "
            "replacement would allow its full quantities again. Cancel it instead.",
            "status",
        )
    now = utcnow()
    permit.status = status
    permit.status_reason = reason
    permit.status_changed_at = now
    permit.replaced_by_id = replacement.id if replacement else None
    document = sign_document(
        status_xml(permit, status, principal, reason, replacement),
        identity.key_pem,
        identity.cert_pem,
    )
    told = announce(session, permit=permit, document=document, settings=settings)
    session.flush()
    record_event(
        session,
        action=f"permit.{'cancel' if status == CANCELLED else 'replace'}",
        outcome="ok",
        actor=principal,
        party=party,
        permit_number=number,
        request=request,
        payload=document,
        detail={
            "status": status,
            "reason": reason,
            "replaced_by": replacement_number,
            "notified": told,
        },
        permit_valid_until=permit.valid_until.date() if permit.valid_until else None,
    )
    return StatusChange(permit, status, document, tuple(told))


# What a status document received from another node may do to this node's copy of a permit.
_RECEIVED_FROM: dict[str, frozenset[str]] = {
    CANCELLED: _CHANGEABLE,
    REPLACED: _CHANGEABLE,
    "endorsed": frozenset({"issued"}),
    "used": _CHANGEABLE,
}


def apply_received(
    session: Session,
    *,
    sender: str,
    issuing_party: str,
    number: str,
    sha256: str,
    status: str,
    reason: str | None,
    replaced_by: tuple[str, str] | None,
) -> dict[str, object]:
    """Move this node's copy of a permit as a verified status document from ``sender`` says.

    Only the permit with exactly the named signed bytes moves, only forward, and an
    endorsed/used status only from one of the permit's two Parties. Returns what happened,
    for the audit event; a document that changes nothing here is still kept and delivered.
    """
    permit = session.scalar(
        select(Permit)
        .where(Permit.issuing_party == issuing_party, Permit.number == number)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if permit is None:
        return {"permit": "not known here"}
    if permit.signed_sha256 != sha256:
        return {"permit": "other bytes here", "code": "EPIX-STATE-009"}
    if sender not in (permit.issuing_party, permit.recipient_party):
        return {"permit": "sender is not one of its Parties", "code": "EPIX-STATE-006"}
    if permit.status not in _RECEIVED_FROM.get(status, frozenset()):
        return {"permit": f"stays {permit.status}", "code": "EPIX-STATE-008"}
    previous = permit.status
    permit.status = status
    permit.status_reason = reason
    permit.status_changed_at = utcnow()
    if replaced_by is not None:
        permit.replaced_by_id = session.scalar(
            select(Permit.id).where(
                Permit.issuing_party == replaced_by[0], Permit.number == replaced_by[1]
            )
        )
    session.flush()
    return {"permit": "changed", "from": previous, "to": status}
