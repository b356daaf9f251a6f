"""The published registry: a versioned XML document signed by the Secretariat (EPIX-DSIG-1).

``render_document`` writes a snapshot as XML, ``publish`` signs the current registry and keeps
the exact bytes, ``read_registry`` verifies a document against the Secretariat certificate the
node trusts ONLY (the pinned one, or a successor reached through announcements each signed by
the certificate before it: ``epix.registry.anchors``; never a certificate the document merely
contains) and reads its data from what the signature covers, and ``import_registry`` makes the
node's tables follow a newer document.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree
from sqlalchemy.orm import Session

from epix.audit.context import RequestContext
from epix.audit.service import record_event
from epix.auth.principal import SECRETARIAT_PARTY, Principal
from epix.db.base import utcnow
from epix.errors import EpixError, Finding
from epix.registry import repository
from epix.registry.models import ETAG_LENGTH, RegistryAnchorLink, RegistryDocument
from epix.registry.roles import SECRETARIAT
from epix.registry.service import one_certificate
from epix.registry.snapshot import AuthorityEntry, CertificateEntry, PartyEntry, RegistrySnapshot
from epix.signatures import StaticTrustStore, TrustedCertificate, sign_document, verify_document
from epix.signatures.trust import as_utc, fingerprint_of
from epix.xml import load_schema, parse_xml
from epix.xml.namespaces import EPIX_REGISTRY

SCHEMA = "epix/registry.xsd"
# A registry of every Party with a few certificates each is well under this.
MAX_DOCUMENT_BYTES = 32 * 1024 * 1024
_NS = f"{{{EPIX_REGISTRY}}}"


def format_time(moment: datetime) -> str:
    """UTC with milliseconds and a Z, the only time format the document uses."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


def etag_of(sha256: str) -> str:
    """The strong HTTP entity tag of a document: its SHA-256, quoted."""
    return f'"{sha256}"'


def _sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, _NS + name)
    if text is not None:
        element.text = text
    return element


def render_document(snapshot: RegistrySnapshot, anchor_links: Sequence[bytes] = ()) -> bytes:
    """The unsigned registry document for ``snapshot``, carrying the Secretariat's signed
    announcements of its successive signing certificates (``anchor_links``, oldest first)."""
    # A parsed template gives the default namespace without a None-keyed nsmap.
    root = etree.fromstring(f'<Registry xmlns="{EPIX_REGISTRY}"/>'.encode())
    root.set("version", str(snapshot.version))
    root.set("issuedAt", format_time(snapshot.issued_at))
    if snapshot.expires_at is not None:
        root.set("expires", format_time(snapshot.expires_at))
    for party in snapshot.parties:
        party_element = _sub(root, "Party")
        party_element.set("code", party.code)
        party_element.set("addedAt", format_time(party.added_at))
        _sub(party_element, "Name", party.name)
        if party.endpoint_url:
            _sub(party_element, "Endpoint", party.endpoint_url)
        for authority in party.authorities:
            authority_element = _sub(party_element, "Authority")
            authority_element.set("id", str(authority.id))
            authority_element.set("kind", authority.kind)
            authority_element.set("addedAt", format_time(authority.added_at))
            _sub(authority_element, "Name", authority.name)
            if authority.contact:
                _sub(authority_element, "Contact", authority.contact)
            for entry in authority.certificates:
                _render_certificate(authority_element, entry)
    for link in anchor_links:
        _sub(root, "AnchorLink", base64.b64encode(link).decode("ascii"))
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _render_certificate(parent: etree._Element, entry: CertificateEntry) -> None:
    element = _sub(parent, "Certificate")
    element.set("fingerprint", entry.fingerprint)
    element.set("notBefore", format_time(entry.not_before))
    element.set("notAfter", format_time(entry.not_after))
    element.set("roles", " ".join(entry.roles))
    element.set("addedBy", entry.added_by)
    element.set("addedAt", format_time(entry.added_at))
    _sub(element, "Subject", entry.subject)
    der = x509.load_pem_x509_certificate(entry.pem).public_bytes(serialization.Encoding.DER)
    _sub(element, "Data", base64.b64encode(der).decode("ascii"))
    if entry.revoked_at is not None:
        revocation = _sub(element, "Revocation")
        revocation.set("at", format_time(entry.revoked_at))
        revocation.set("by", entry.revoked_by or "")
        _sub(revocation, "Reason", entry.revocation_reason or "revoked")


@dataclass(frozen=True, slots=True)
class VerifiedRegistry:
    """A registry document whose Secretariat signature verified, and what it says."""

    snapshot: RegistrySnapshot
    content: bytes
    sha256: str
    signer: TrustedCertificate
    # The successor the signer announced in this document (PEM), if any.
    announced_next: bytes | None = None
    # The anchors (PEM) left behind to reach the signer, starting with the one trusted.
    passed: tuple[bytes, ...] = ()


def anchor_store(anchor_pem: bytes) -> StaticTrustStore:
    """The trust store of exactly one certificate: the pinned Secretariat anchor (a file with
    a private key or several certificates is refused, EPIX-REG-014/-007)."""
    certificate = one_certificate(anchor_pem, "anchor", "EPIX-REG-007")
    trusted = TrustedCertificate.from_certificate(
        certificate,
        party=SECRETARIAT_PARTY,
        role=SECRETARIAT,
        authority_name="CITES Secretariat",
    )
    return StaticTrustStore([trusted])


def read_registry(
    content: bytes,
    anchor_pem: bytes,
    *,
    pending_next: bytes | None = None,
    retired: frozenset[str] = frozenset(),
) -> VerifiedRegistry:
    """Verify a registry document against the trusted Secretariat certificate and read it.

    A document signed by a successor is accepted when the chain of announcements leads there
    from ``anchor_pem``: the ones the document carries (each verified against the certificate
    before it) or ``pending_next``, learnt from an earlier verified document. Certificates in
    ``retired`` (anchors this node moved away from) are never reached again.

    Refusals: EPIX-XML-* (not safe XML), EPIX-XML-005 (not a registry), EPIX-REG-007 with the
    signature's own codes (unsigned, forged, tampered, or signed by anyone but the anchor or
    an announced successor), EPIX-SCHEMA-001 (signed but malformed).
    """
    root = parse_xml(content, max_bytes=MAX_DOCUMENT_BYTES)
    if root.tag != _NS + "Registry":
        raise EpixError.of(
            "EPIX-XML-005", f"Expected a {{{EPIX_REGISTRY}}}Registry document, got {root.tag}.", "/"
        )
    verdict = verify_document(
        root, party=SECRETARIAT_PARTY, role=SECRETARIAT, trust=anchor_store(anchor_pem)
    )
    passed: tuple[bytes, ...] = ()
    if not verdict.valid:
        # Only links each verified by its predecessor are followed; what the document says
        # is read once its own signature verified against the end of that chain.
        links = _anchor_links(root)
        chain = successor_chain(links, anchor_pem, pending_next, retired)
        for step, successor in enumerate(chain):
            attempt = verify_document(
                root, party=SECRETARIAT_PARTY, role=SECRETARIAT, trust=anchor_store(successor)
            )
            if attempt.valid:
                verdict, passed = attempt, (anchor_pem, *chain[:step])
                break
    if not verdict.valid or verdict.signed_element is None or verdict.certificate is None:
        raise EpixError(
            [
                Finding(
                    "EPIX-REG-007",
                    "The registry document is not validly signed by the pinned Secretariat "
                    "certificate.",
                    "/Registry/Signature",
                ),
                *verdict.findings,
            ]
        )
    signed = verdict.signed_element
    schema = load_schema(SCHEMA)
    if not schema.validate(signed):
        errors: Any = schema.error_log  # the stubs do not declare it iterable
        raise EpixError(
            [
                Finding("EPIX-SCHEMA-001", error.message, location=error.path, line=error.line)
                for error in errors
            ]
        )
    try:
        snapshot = _read_snapshot(signed)
    except ValueError as exc:  # e.g. a time the schema allows but Python cannot represent
        raise EpixError.of(
            "EPIX-SCHEMA-001", f"The registry document has an unreadable value: {exc}", "/Registry"
        ) from None
    signer_pem = verdict.certificate.pem
    announced = [
        certificate
        for link in _anchor_links(signed)
        if (certificate := announced_certificate(link, signer_pem)) is not None
        and fingerprint_of(certificate) != verdict.certificate.fingerprint
    ]
    return VerifiedRegistry(
        snapshot=snapshot,
        content=content,
        sha256=hashlib.sha256(content).hexdigest(),
        signer=verdict.certificate,
        announced_next=(
            announced[-1].public_bytes(serialization.Encoding.PEM) if announced else None
        ),
        passed=passed,
    )


# A chain longer than this is not followed (each step costs signature checks): decades of
# yearly rotations.
MAX_ANCHOR_LINKS = 64


def _anchor_links(root: etree._Element) -> list[bytes]:
    links = []
    for element in root.iterfind(_NS + "AnchorLink"):
        try:
            links.append(base64.b64decode(element.text or "", validate=True))
        except (ValueError, binascii.Error):
            continue  # not a link; a signed document with one fails its schema anyway
    return links[:MAX_ANCHOR_LINKS]


def render_announcement(next_certificate: x509.Certificate, announced_at: datetime) -> bytes:
    """The unsigned ``AnchorAnnouncement`` naming ``next_certificate``."""
    root = etree.fromstring(f'<AnchorAnnouncement xmlns="{EPIX_REGISTRY}"/>'.encode())
    root.set("announcedAt", format_time(announced_at))
    der = next_certificate.public_bytes(serialization.Encoding.DER)
    _sub(root, "Certificate", base64.b64encode(der).decode("ascii"))
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def announced_certificate(link: bytes, signer_pem: bytes) -> x509.Certificate | None:
    """The certificate an ``AnchorAnnouncement`` names, if ``signer_pem`` signed it (checked
    at its ``announcedAt``: an anchor that has since expired still vouches for the successor
    it named while valid); None for anything else."""
    try:
        root = parse_xml(link, max_bytes=64 * 1024)
        if root.tag != _NS + "AnchorAnnouncement":
            return None
        verdict = verify_document(
            root,
            party=SECRETARIAT_PARTY,
            role=SECRETARIAT,
            trust=anchor_store(signer_pem),
            at=_parse_time(root.get("announcedAt", "")),
        )
        signed = verdict.signed_element
        if not verdict.valid or signed is None or not load_schema(SCHEMA).validate(signed):
            return None
        return x509.load_der_x509_certificate(
            base64.b64decode(_child_text(signed, "Certificate") or "")
        )
    except (EpixError, ValueError, OverflowError, binascii.Error):  # e.g. year 9999 at -14:00
        return None


def successor_chain(
    links: Sequence[bytes],
    anchor_pem: bytes,
    pending_next: bytes | None,
    retired: frozenset[str],
) -> list[bytes]:
    """The certificates (PEM) reachable from ``anchor_pem`` one announcement at a time, in
    order: each named by a link its predecessor signed (the first may instead be
    ``pending_next``). Never a retired certificate, never one twice."""
    chain: list[bytes] = []
    current = anchor_pem
    seen = {fingerprint_of(x509.load_pem_x509_certificate(anchor_pem)), *retired}
    while True:
        named = [c for link in links if (c := announced_certificate(link, current)) is not None]
        if named:
            successor: x509.Certificate | None = named[-1]
        elif not chain and pending_next is not None:
            successor = x509.load_pem_x509_certificate(pending_next)
        else:
            successor = None
        if successor is None or fingerprint_of(successor) in seen:
            return chain
        seen.add(fingerprint_of(successor))
        current = successor.public_bytes(serialization.Encoding.PEM)
        chain.append(current)


def _child_text(element: etree._Element, name: str) -> str | None:
    child = element.find(_NS + name)
    return child.text if child is not None and child.text is not None else None


def _read_snapshot(root: etree._Element) -> RegistrySnapshot:
    parties = []
    for party in root.iterfind(_NS + "Party"):
        authorities = []
        for authority in party.iterfind(_NS + "Authority"):
            certificates = tuple(
                _read_certificate(element) for element in authority.iterfind(_NS + "Certificate")
            )
            authorities.append(
                AuthorityEntry(
                    id=int(authority.get("id", "0")),
                    kind=authority.get("kind", ""),
                    name=_child_text(authority, "Name") or "",
                    contact=_child_text(authority, "Contact"),
                    added_at=_parse_time(authority.get("addedAt", "")),
                    certificates=certificates,
                )
            )
        parties.append(
            PartyEntry(
                code=party.get("code", ""),
                name=_child_text(party, "Name") or "",
                endpoint_url=_child_text(party, "Endpoint"),
                added_at=_parse_time(party.get("addedAt", "")),
                authorities=tuple(authorities),
            )
        )
    return RegistrySnapshot(
        version=int(root.get("version", "0")),
        issued_at=_parse_time(root.get("issuedAt", "")),
        parties=tuple(parties),
        expires_at=_parse_time(expires) if (expires := root.get("expires")) else None,
    )


def _read_certificate(element: etree._Element) -> CertificateEntry:
    location = f"/Registry//Certificate[@fingerprint='{element.get('fingerprint')}']"
    try:
        certificate = x509.load_der_x509_certificate(
            base64.b64decode(_child_text(element, "Data") or "", validate=False)
        )
    except (ValueError, binascii.Error):
        raise EpixError.of(
            "EPIX-SCHEMA-001", "A registered certificate is not a DER certificate.", location
        ) from None
    if fingerprint_of(certificate) != element.get("fingerprint"):
        raise EpixError.of(
            "EPIX-SCHEMA-001", "A certificate's fingerprint does not match its data.", location
        )
    revocation = element.find(_NS + "Revocation")
    return CertificateEntry(
        fingerprint=fingerprint_of(certificate),
        pem=certificate.public_bytes(serialization.Encoding.PEM),
        subject=_child_text(element, "Subject") or "",
        not_before=_parse_time(element.get("notBefore", "")),
        not_after=_parse_time(element.get("notAfter", "")),
        roles=tuple((element.get("roles") or "").split()),
        added_by=element.get("addedBy", ""),
        added_at=_parse_time(element.get("addedAt", "")),
        revoked_at=_parse_time(revocation.get("at", "")) if revocation is not None else None,
        revocation_reason=_child_text(revocation, "Reason") if revocation is not None else None,
        revoked_by=revocation.get("by") if revocation is not None else None,
    )


def publish(
    session: Session,
    key_pem: bytes,
    cert_pem: bytes,
    *,
    validity: timedelta,
    now: datetime | None = None,
    actor: Principal | None = None,
    request: RequestContext | None = None,
) -> RegistryDocument:
    """Sign the current registry with the Secretariat key, valid for ``validity`` from ``now``.

    The document already published is returned while it is current, more than half of
    ``validity`` is left before its expiry, and it was signed with ``cert_pem``. Otherwise (a
    change, an expiry drawing near, a document from before expiry existed, or the switch to
    an announced signing certificate) a new version is signed: a re-signed unchanged
    registry also takes the next version, like a CRL's number, so a follower accepts it
    as newer and a frozen source is told apart from a current one. Holding the version lock
    makes concurrent publishers produce one document.
    """
    now = now or utcnow()
    state = repository.lock_state(session)
    links = repository.anchor_links(session)
    signer = _chain_signer(session, links, cert_pem)
    latest = repository.latest_document(session)
    if latest is not None and latest.version >= state.version:
        if _still_current(latest, signer, validity, now):
            return latest
        state.version = latest.version + 1
        state.updated_at = now
    snapshot = replace(repository.load_snapshot(session, now), expires_at=now + validity)
    content = sign_document(
        render_document(snapshot, [link.content for link in links]),
        key_pem,
        cert_pem,
        max_bytes=MAX_DOCUMENT_BYTES,
    )
    document = RegistryDocument(
        version=snapshot.version,
        issued_at=snapshot.issued_at,
        expires_at=snapshot.expires_at,
        content=content,
        sha256=hashlib.sha256(content).hexdigest(),
        source_url=None,
        source_etag=None,
        stored_at=utcnow(),
        signer_fingerprint=signer,
    )
    session.add(document)
    session.flush()
    record_event(
        session,
        action="registry.publish",
        outcome="ok",
        actor=actor,
        party=SECRETARIAT_PARTY,
        request=request,
        payload=content,
        detail={"registry_version": snapshot.version, "expires": format_time(now + validity)},
    )
    return document


def current_publication(
    session: Session, cert_pem: bytes, *, validity: timedelta, now: datetime | None = None
) -> RegistryDocument | None:
    """The published document ``publish`` would return unchanged, found by reading only (a
    snapshot will do, no lock): None when a new version must be signed. Refuses EPIX-REG-019
    as ``publish`` does. The document carries every anchor announcement made so far."""
    signer = _chain_signer(session, repository.anchor_links(session), cert_pem)
    latest = repository.latest_document(session)
    if latest is None or latest.version < repository.current_version(session):
        return None
    return latest if _still_current(latest, signer, validity, now or utcnow()) else None


def _still_current(
    document: RegistryDocument, signer: str, validity: timedelta, now: datetime
) -> bool:
    """Whether ``document`` may be served again: signed by ``signer`` and more than half of
    ``validity`` left before its expiry."""
    return (
        document.expires_at is not None
        and as_utc(document.expires_at) - now > validity / 2
        and document.signer_fingerprint == signer
    )


def _chain_signer(session: Session, links: Sequence[RegistryAnchorLink], cert_pem: bytes) -> str:
    """The fingerprint of ``cert_pem`` once ``require_chain_signer`` accepted it."""
    require_chain_signer(session, links, cert_pem)
    return fingerprint_of(one_certificate(cert_pem, "cert", "EPIX-REG-019"))


def require_chain_signer(
    session: Session, links: Sequence[RegistryAnchorLink], cert_pem: bytes
) -> None:
    """Refuse (EPIX-REG-019) to sign with a certificate followers will not accept: once a
    successor was announced, only the last announcement's signer (followers not moved yet)
    or the successor it names (the switch) may sign, and after a document signed by the
    successor was published, only the successor (followers that fetched it retired the old)."""
    if not links:
        return
    fingerprint = fingerprint_of(one_certificate(cert_pem, "cert", "EPIX-REG-019"))
    last = links[-1]
    latest = repository.latest_document(session)
    switched = latest is not None and latest.signer_fingerprint == last.next_fingerprint
    accepted = (
        (last.next_fingerprint,) if switched else (last.signer_fingerprint, last.next_fingerprint)
    )
    if fingerprint not in accepted:
        raise EpixError.of(
            "EPIX-REG-019",
            f"The signing certificate {fingerprint} is not the Secretariat's current anchor: "
            f"followers accept {' or '.join(accepted)} only.",
            "cert",
        )


@dataclass(frozen=True, slots=True)
class ImportOutcome:
    version: int
    changed: bool
    sha256: str


def import_registry(
    session: Session,
    verified: VerifiedRegistry,
    *,
    source_url: str | None = None,
    etag: str | None = None,
    actor: Principal | None = None,
    request: RequestContext | None = None,
) -> ImportOutcome:
    """Make the tables say what a verified document says, if it is newer than what is held.

    The same version with the same bytes is a no-op; an older version, or the same version
    with different bytes, is refused with EPIX-REG-008 (a rollback or a forked registry).
    """
    if etag is not None and len(etag) > ETAG_LENGTH:
        etag = None  # HTTP sets no limit; not kept, the next fetch is a plain GET
    state = repository.lock_state(session)
    incoming = verified.snapshot.version
    latest = repository.latest_document(session)
    if incoming == state.version and latest is not None and latest.sha256 == verified.sha256:
        if etag and latest.source_etag != etag:
            latest.source_etag = etag
        return ImportOutcome(version=incoming, changed=False, sha256=verified.sha256)
    if incoming <= state.version and not (incoming == 0 == state.version and latest is None):
        raise EpixError.of(
            "EPIX-REG-008",
            f"The registry document has version {incoming}; this node already holds version "
            f"{state.version}" + (" with other content." if incoming == state.version else "."),
            "/Registry/@version",
        )
    repository.replace_all(session, verified.snapshot)
    state.version = incoming
    state.updated_at = utcnow()
    session.add(
        RegistryDocument(
            version=incoming,
            issued_at=verified.snapshot.issued_at,
            expires_at=verified.snapshot.expires_at,
            content=verified.content,
            sha256=verified.sha256,
            source_url=source_url,
            source_etag=etag,
            stored_at=utcnow(),
            signer_fingerprint=verified.signer.fingerprint,
        )
    )
    session.flush()
    record_event(
        session,
        action="registry.import",
        outcome="ok",
        actor=actor,
        party=SECRETARIAT_PARTY,
        request=request,
        payload=verified.content,
        detail={
            "registry_version": incoming,
            "source_url": source_url,
            "signer": verified.signer.fingerprint,
        },
    )
    return ImportOutcome(version=incoming, changed=True, sha256=verified.sha256)
