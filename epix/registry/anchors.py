"""Rotating the Secretariat's registry signing certificate without touching every follower.

The standard remedy (TUF's root rotation): the Secretariat announces its next certificate in
an ``AnchorAnnouncement`` signed with its current key (``announce_next_anchor``), keeps
signing with the current key while followers pick the announcement up, then switches
(EPIX_REGISTRY_SIGNING_KEY_PATH/_CERT_PATH to the new pair). Every published document carries
every announcement made so far (``<AnchorLink>``), so the chain travels with the data: a
follower bootstrapped from an old pinned file, or offline during several rotations, walks from
the anchor it trusts to the one now signing, each step verified by the certificate before it;
there is no second resource to fetch, keep in step with the document, or find missing.

A follower remembers what it learnt (``registry_anchors``, audited): the announced successor
(``next``), the anchor it trusts, and the ones it moved away from (``retired``), which are
never accepted again, so a stolen old key cannot roll it back. The pinned file
(EPIX_REGISTRY_ANCHOR_PATH) stays the bootstrap: a node that never moved trusts it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy.orm import Session

from epix.audit.context import RequestContext
from epix.audit.service import record_event
from epix.auth.principal import SECRETARIAT_PARTY, Principal
from epix.db.base import utcnow
from epix.errors import EpixError, Finding
from epix.registry import repository
from epix.registry.document import (
    VerifiedRegistry,
    format_time,
    render_announcement,
    require_chain_signer,
)
from epix.registry.models import RegistryAnchor, RegistryAnchorLink
from epix.registry.service import (
    UNREADABLE_EXTENSIONS,
    one_certificate,
    refusal_audited,
    require_secretariat,
)
from epix.signatures import sign_document
from epix.signatures.trust import as_utc, fingerprint_of

TRUSTED, NEXT, RETIRED = "trusted", "next", "retired"
UNACCEPTABLE = "EPIX-REG-018"


def _require_acceptable(
    successor: x509.Certificate, current: x509.Certificate, known: set[str], now: datetime
) -> None:
    """Refuse (EPIX-REG-018) a successor followers must not move to."""
    problem = None
    try:
        is_ca = successor.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    except UNREADABLE_EXTENSIONS:
        raise EpixError.of(
            UNACCEPTABLE, "The next anchor certificate's extensions cannot be read.", "cert"
        ) from None
    public = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if is_ca:
        problem = "is a CA certificate; announce the leaf certificate that signs the registry"
    elif as_utc(successor.not_valid_after_utc) <= now:
        problem = f"expired at {format_time(successor.not_valid_after_utc)}"
    elif successor.public_key().public_bytes(*public) == current.public_key().public_bytes(*public):
        problem = "has the current signing key; a rotation needs a new key pair"
    elif fingerprint_of(successor) in known:
        problem = "was already an anchor of this registry; announce a new certificate"
    if problem is not None:
        raise EpixError.of(UNACCEPTABLE, f"The next anchor certificate {problem}.", "cert")


def announce_next_anchor(
    session: Session,
    next_pem: bytes,
    key_pem: bytes,
    cert_pem: bytes,
    *,
    actor: Principal,
    request: RequestContext | None = None,
    now: datetime | None = None,
) -> RegistryAnchorLink:
    """Announce ``next_pem`` as the Secretariat's next signing certificate, signed with the
    current key pair (``key_pem``/``cert_pem``), and make the next publication carry it.
    Secretariat only (EPIX-AUTH-004); a refusal is audited.

    Announcing again before the switch replaces the pending announcement (a successor key
    lost or exposed before use). Refusals: EPIX-REG-014 (a private key), EPIX-REG-018 (not
    one certificate, a CA, expired, the current key, or a former anchor), EPIX-REG-019 (the
    current certificate is not the chain's head); ``ValueError`` for a key not matching it.
    """
    with refusal_audited(
        session,
        action="registry.anchor.announce",
        actor=actor,
        party=SECRETARIAT_PARTY,
        request=request,
        attempt={},
    ):
        require_secretariat(actor)
        now = now or utcnow()
        successor = one_certificate(next_pem, "cert", UNACCEPTABLE)
        current = one_certificate(cert_pem, "signing_cert", "EPIX-REG-019")
        state = repository.lock_state(session)
        links = list(repository.anchor_links(session))
        current_fingerprint = fingerprint_of(current)
        replaced = None
        require_chain_signer(session, links, cert_pem)
        if links and links[-1].signer_fingerprint == current_fingerprint:
            replaced = links.pop()  # not switched yet: the announcement is replaced
        known = {link.signer_fingerprint for link in links} | {current_fingerprint}
        _require_acceptable(successor, current, known, now)
        content = sign_document(render_announcement(successor, now), key_pem, cert_pem)
        if replaced is not None:
            session.delete(replaced)
            session.flush()
        link = RegistryAnchorLink(
            signer_fingerprint=current_fingerprint,
            next_fingerprint=fingerprint_of(successor),
            content=content,
            announced_at=now,
            announced_by=actor.username,
        )
        session.add(link)
        state.version += 1  # the next publication carries the announcement
        state.updated_at = now
        session.flush()
        record_event(
            session,
            action="registry.anchor.announce",
            outcome="ok",
            actor=actor,
            party=SECRETARIAT_PARTY,
            request=request,
            payload=content,
            detail={
                "signer": current_fingerprint,
                "next_anchor": link.next_fingerprint,
                "replaces": replaced.next_fingerprint if replaced is not None else None,
                "registry_version": state.version,
            },
        )
    return link


@dataclass(frozen=True, slots=True)
class FollowerAnchor:
    """What a follower verifies the next document with."""

    anchor_pem: bytes
    pending_next: bytes | None
    retired: frozenset[str]


def follower_anchor(session: Session, pinned_pem: bytes) -> FollowerAnchor:
    """The anchor a follower trusts: the one it moved to through announcements, or the pinned
    file while it has not moved past it (an operator who pins a certificate this node never
    retired is obeyed: it is the bootstrap)."""
    chosen = _chosen_anchor(repository.anchors(session), pinned_pem)
    assert chosen is not None  # with a pinned file there is always one
    return chosen


def _chosen_anchor(
    rows: Sequence[RegistryAnchor], pinned_pem: bytes | None
) -> FollowerAnchor | None:
    """``follower_anchor`` over rows already read; without a pinned file, the anchor learnt
    (None when none was)."""
    by_fingerprint = {row.fingerprint: row for row in rows}
    retired = frozenset(fp for fp, row in by_fingerprint.items() if row.state == RETIRED)
    trusted = next((row for row in rows if row.state == TRUSTED), None)
    if pinned_pem is not None:
        pinned = fingerprint_of(one_certificate(pinned_pem, "anchor", "EPIX-REG-007"))
        if trusted is None or (pinned not in retired and pinned != trusted.fingerprint):
            return FollowerAnchor(pinned_pem, None, retired - {pinned})
    if trusted is None:
        return None
    pending = next((row.pem.encode() for row in rows if row.state == NEXT), None)
    return FollowerAnchor(trusted.pem.encode(), pending, retired)


@dataclass(frozen=True, slots=True)
class AnchorCertificate:
    """A Secretariat certificate as operators see it: no key, only what identifies it."""

    fingerprint: str
    not_before: datetime
    not_after: datetime

    @classmethod
    def of(cls, pem: bytes) -> AnchorCertificate:
        certificate = x509.load_pem_x509_certificate(pem)
        return cls(
            fingerprint_of(certificate),
            as_utc(certificate.not_valid_before_utc),
            as_utc(certificate.not_valid_after_utc),
        )


@dataclass(frozen=True, slots=True)
class AnchorState:
    """A follower's rotation state: the anchor it verifies documents with and the successor
    announced to it, with when it learnt of it. No take-over time is announced: the follower
    moves at the first document the successor signs, which must come before the anchor
    expires."""

    current: AnchorCertificate
    successor: AnchorCertificate | None = None
    successor_known_since: datetime | None = None


def pinned_anchor_pem(path: Path | None) -> bytes | None:
    """The pinned anchor file's bytes (EPIX_REGISTRY_ANCHOR_PATH), None when unset or
    unreadable (the follower itself reports that when it starts)."""
    try:
        return path.read_bytes() if path is not None else None
    except OSError:
        return None


def anchor_state(session: Session, pinned_pem: bytes | None) -> AnchorState | None:
    """The rotation state (None when this node neither pins nor learnt an anchor)."""
    rows = repository.anchors(session)
    chosen = _chosen_anchor(rows, pinned_pem)
    if chosen is None:
        return None
    successor = next((row for row in rows if row.state == NEXT), None)
    if chosen.pending_next is None or successor is None:
        return AnchorState(AnchorCertificate.of(chosen.anchor_pem))
    return AnchorState(
        AnchorCertificate.of(chosen.anchor_pem),
        AnchorCertificate.of(chosen.pending_next),
        as_utc(successor.changed_at),
    )


ANCHOR_EXPIRED = "EPIX-REG-020"
SUCCESSOR_UNREACHABLE = "EPIX-REG-021"


def anchor_finding(
    state: AnchorState, last_check_code: str | None, now: datetime
) -> Finding | None:
    """Why this follower cannot take a newer registry document from its source, as far as
    its anchors tell: its anchor expired (EPIX-REG-020), or the announced successor expired
    or is not reached from the source's document (the last check was refused as not signed
    by the anchor, EPIX-REG-007: EPIX-REG-021). None when neither holds."""
    current, successor = state.current, state.successor
    if successor is not None and successor.not_after <= now:
        return Finding(
            SUCCESSOR_UNREACHABLE,
            f"The announced successor of the registry anchor ({successor.fingerprint}) expired "
            f"at {format_time(successor.not_after)}: it can never take over. Ask the "
            "Secretariat to announce a current certificate.",
            "EPIX_REGISTRY_ANCHOR_PATH",
        )
    if current.not_after <= now:
        then = (
            f"the announced successor {successor.fingerprint} has not signed a document yet"
            if successor is not None
            else "no successor was announced to this follower; pin the Secretariat's current "
            "certificate (obtained out of band) in EPIX_REGISTRY_ANCHOR_PATH"
        )
        return Finding(
            ANCHOR_EXPIRED,
            f"The registry anchor {current.fingerprint} expired at "
            f"{format_time(current.not_after)}: no newer registry document verifies against "
            f"it, and {then}. The copy held serves until it lapses.",
            "EPIX_REGISTRY_ANCHOR_PATH",
        )
    if successor is not None and last_check_code == "EPIX-REG-007":
        return Finding(
            SUCCESSOR_UNREACHABLE,
            f"The source's registry document verifies neither against the anchor "
            f"{current.fingerprint} nor through the announced successor "
            f"{successor.fingerprint} (last check EPIX-REG-007): the Secretariat may sign with a "
            "key this follower was never told of. Check the source, and pin the Secretariat's "
            "current certificate (obtained out of band) in EPIX_REGISTRY_ANCHOR_PATH.",
            "EPIX_REGISTRY_ANCHOR_PATH",
        )
    return None


def record_anchor(
    session: Session,
    verified: VerifiedRegistry,
    *,
    request: RequestContext | None = None,
) -> None:
    """After importing ``verified``: trust its signer (retiring every other anchor, audited
    ``registry.anchor.rotate`` when it changes) and remember the successor it announces
    (``registry.anchor.next``). Call only in the transaction that imported the document."""
    now, version = utcnow(), verified.snapshot.version
    rows = {row.fingerprint: row for row in repository.anchors(session)}
    signer = verified.signer.fingerprint
    previous = next((fp for fp, row in rows.items() if row.state == TRUSTED), None)
    for row in rows.values():
        if row.fingerprint != signer and row.state == TRUSTED:
            row.state, row.changed_at, row.registry_version = RETIRED, now, version
    for left_behind in verified.passed:  # e.g. the pinned file a fresh follower started from
        fingerprint = fingerprint_of(x509.load_pem_x509_certificate(left_behind))
        if fingerprint in rows:
            rows[fingerprint].state, rows[fingerprint].changed_at = RETIRED, now
            rows[fingerprint].registry_version = version
        else:
            session.add(
                RegistryAnchor(
                    fingerprint=fingerprint,
                    pem=left_behind.decode(),
                    state=RETIRED,
                    registry_version=version,
                    changed_at=now,
                )
            )
    previous = previous or (
        fingerprint_of(x509.load_pem_x509_certificate(verified.passed[0]))
        if verified.passed
        else None
    )
    if signer in rows:
        row = rows[signer]
        if row.state != TRUSTED:
            row.state, row.changed_at, row.registry_version = TRUSTED, now, version
    else:
        session.add(
            RegistryAnchor(
                fingerprint=signer,
                pem=verified.signer.pem.decode(),
                state=TRUSTED,
                registry_version=version,
                changed_at=now,
            )
        )
    if previous is not None and previous != signer:
        record_event(
            session,
            action="registry.anchor.rotate",
            outcome="ok",
            party=SECRETARIAT_PARTY,
            request=request,
            detail={"previous": previous, "anchor": signer, "registry_version": version},
        )
    announced = (
        fingerprint_of(x509.load_pem_x509_certificate(verified.announced_next))
        if verified.announced_next is not None
        else None
    )
    for row in rows.values():
        if row.state == NEXT and row.fingerprint != announced:
            session.delete(row)
    if announced is not None and announced not in rows and verified.announced_next is not None:
        session.add(
            RegistryAnchor(
                fingerprint=announced,
                pem=verified.announced_next.decode(),
                state=NEXT,
                registry_version=version,
                changed_at=now,
            )
        )
        record_event(
            session,
            action="registry.anchor.next",
            outcome="ok",
            party=SECRETARIAT_PARTY,
            request=request,
            detail={"anchor": signer, "next_anchor": announced, "registry_version": version},
        )
    session.flush()


@dataclass(frozen=True, slots=True)
class FollowerFetch:
    """One Party's last identified fetch of the registry document, as the Secretariat sees
    it; ``has_newest_anchor`` is None when no anchor was ever announced."""

    party: str
    fetched_at: datetime
    status: int
    version: int
    sha256: str
    anchor_fingerprint: str | None
    has_newest_anchor: bool | None

    def as_dict(self) -> dict[str, object]:
        return {
            "party": self.party,
            "fetched_at": self.fetched_at.isoformat(),
            "status": self.status,
            "version": self.version,
            "sha256": self.sha256,
            "anchor_fingerprint": self.anchor_fingerprint,
            "has_newest_anchor": self.has_newest_anchor,
        }


@dataclass(frozen=True, slots=True)
class FollowerReport:
    """Which followers have fetched a document carrying the newest anchor announcement: the
    Secretariat switches signing key once those it needs have (the others, anonymous or
    fetching copies elsewhere, only after a validity period)."""

    newest_anchor: str | None
    followers: tuple[FollowerFetch, ...]

    def as_dict(self) -> dict[str, object]:
        return {
            "newest_anchor": self.newest_anchor,
            "followers": [fetch.as_dict() for fetch in self.followers],
        }


def follower_report(session: Session) -> FollowerReport:
    """The followers recorded by ``GET /v1/registry`` on this (the Secretariat's) node."""
    newest = repository.newest_announced_anchor(session)
    return FollowerReport(
        newest,
        tuple(
            FollowerFetch(
                party=row.party,
                fetched_at=as_utc(row.fetched_at),
                status=row.status,
                version=row.version,
                sha256=row.sha256,
                anchor_fingerprint=row.anchor_fingerprint,
                has_newest_anchor=None if newest is None else row.anchor_fingerprint == newest,
            )
            for row in repository.follower_fetches(session)
        ),
    )
