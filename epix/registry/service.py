"""Registry changes (Secretariat only, each audited and versioned) and registry questions.

Every change takes the version row's lock first, so concurrent changes serialise and every
change gets its own version number; the caller commits (services never do).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import pycountry
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy.orm import Session

from epix.audit.context import RequestContext
from epix.audit.service import record_event
from epix.auth.principal import Principal, Role
from epix.db.base import utcnow
from epix.errors import EpixError
from epix.registry import repository
from epix.registry.models import RegistryAuthority, RegistryCertificate, RegistryParty
from epix.registry.roles import check_roles, normalise_kind
from epix.registry.snapshot import load_certificate
from epix.signatures.profile import MAX_CERTIFICATE_BYTES, key_problem
from epix.signatures.trust import as_utc, fingerprint_of
from epix.xml import xml_text

EXPIRY_THRESHOLDS_DAYS: tuple[int, ...] = (7, 30, 60)
# ISO 3166-1 user-assigned codes, usable as test Parties (the reference permit uses XA, XB, XC).
_USER_ASSIGNED = (
    {"AA", "ZZ"}
    | {f"Q{c}" for c in "MNOPQRSTUVWXYZ"}
    | {f"X{c}" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}
)


def party_code(code: str, location: str = "party") -> str:
    """An ISO 3166-1 alpha-2 code (or a user-assigned one), upper-cased; EPIX-CODE-007 if not."""
    canonical = code.strip().upper()
    if len(canonical) == 2 and (
        canonical in _USER_ASSIGNED or pycountry.countries.get(alpha_2=canonical) is not None
    ):
        return canonical
    raise EpixError.of("EPIX-CODE-007", f"{code!r} is not an ISO 3166-1 alpha-2 code.", location)


def _text(value: str | None, location: str, limit: int, *, required: bool = True) -> str | None:
    cleaned = (value or "").strip()
    if not cleaned:
        if required:
            raise EpixError.of("EPIX-REQ-004", f"{location} must not be empty.", location)
        return None
    if len(cleaned) > limit:
        raise EpixError.of(
            "EPIX-REQ-004", f"{location} is longer than {limit} characters.", location
        )
    return xml_text(cleaned, location)  # it goes into the signed registry document


def travels_in_clear(url: str) -> bool:
    """True for a plain ``http://`` URL whose host is not this machine's loopback: what is sent
    there (a permit, a peer's API key) can be read and changed on the way. Peers are reached
    over https; http is for nodes on one machine (demos, tests)."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "http":
        return False
    host = (parts.hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name
        return True


def endpoint_url(url: str, location: str = "endpoint_url") -> str:
    """An absolute https URL (http only on loopback) with a host, a port in 1-65535, no
    fragment or credentials."""
    cleaned = url.strip()
    try:
        parts = urlsplit(cleaned)
        valid = (
            parts.scheme in ("http", "https")
            and bool(parts.hostname)
            and parts.port != 0  # .port itself raises ValueError beyond 65535
            and not parts.fragment
            and parts.username is None
            and len(cleaned) <= 2000
            and cleaned.isascii()
            and cleaned.isprintable()
        )
    except ValueError:
        valid = False
    if not valid:
        raise EpixError.of(
            "EPIX-REG-012",
            f"{url!r} is not an absolute http(s) URL with a valid port and no credentials.",
            location,
        )
    if travels_in_clear(cleaned):
        raise EpixError.of(
            "EPIX-REG-012",
            f"{url!r} is plain http: peers are reached over https (http only on loopback).",
            location,
        )
    return cleaned.rstrip("/")


def certificate_fingerprint(text: str, location: str = "fingerprint") -> str:
    """The registry's key for a certificate (SHA-256, lower-case hex) from what an operator
    types: ``AB:CD:…`` as openssl prints it is accepted; another length (openssl's default
    fingerprint is SHA-1) is EPIX-REG-005 with how to get the right one."""
    cleaned = "".join(text.split()).replace(":", "").lower()
    if len(cleaned) == 64 and all(c in "0123456789abcdef" for c in cleaned):
        return cleaned
    kind = "a SHA-1 fingerprint" if len(cleaned) == 40 else "not a SHA-256 fingerprint"
    raise EpixError.of(
        "EPIX-REG-005",
        f"{text.strip()[:100]!r} is {kind}; the registry names certificates by their SHA-256 "
        "fingerprint (64 hex digits, as `openssl x509 -noout -fingerprint -sha256` prints it "
        "or `epix registry list` shows it).",
        location,
    )


def require_secretariat(actor: Principal) -> None:
    if not actor.has(Role.SECRETARIAT):
        raise EpixError.of(
            "EPIX-AUTH-004", "Only the Secretariat may change the key registry.", "registry"
        )


def _changed(
    session: Session,
    *,
    action: str,
    actor: Principal,
    party: str,
    request: RequestContext | None,
    detail: dict[str, object],
    version: int,
) -> None:
    record_event(
        session,
        action=action,
        outcome="ok",
        actor=actor,
        party=party,
        request=request,
        detail={**detail, "registry_version": version},
    )


def _party_or_none(code: str | None) -> str | None:
    try:
        return party_code(code) if code else None
    except EpixError:
        return None


@contextmanager
def refusal_audited(
    session: Session,
    *,
    action: str,
    actor: Principal,
    party: str | None,
    request: RequestContext | None,
    attempt: dict[str, object],
) -> Iterator[None]:
    """Run one change in a savepoint; a refusal undoes it and is audited with its code.

    The refusal's audit event stays in the caller's transaction, so a caller that commits
    before re-raising (the route and CLI do) keeps a record of every refused change attempt.
    """
    savepoint = session.begin_nested()
    try:
        yield
    except EpixError as refusal:
        savepoint.rollback()
        record_event(
            session,
            action=action,
            outcome=refusal.findings[0].code,
            actor=actor,
            party=_party_or_none(party),
            request=request,
            detail={
                **{k: v[:200] if isinstance(v, str) else v for k, v in attempt.items()},
                "refused": [
                    {"code": f.code, "message": f.message[:500], "location": f.location}
                    for f in refusal.findings
                ],
            },
        )
        raise
    savepoint.commit()


def _bump(session: Session) -> int:
    state = repository.lock_state(session)
    state.version += 1
    state.updated_at = utcnow()
    return state.version


def add_party(
    session: Session,
    *,
    code: str,
    name: str,
    endpoint: str | None = None,
    actor: Principal,
    request: RequestContext | None = None,
) -> RegistryParty:
    with refusal_audited(
        session,
        action="registry.party.add",
        actor=actor,
        party=code,
        request=request,
        attempt={"party": code, "name": name, "endpoint_url": endpoint},
    ):
        require_secretariat(actor)
        code = party_code(code, "code")
        clean_name = _text(name, "name", 200)
        assert clean_name is not None
        url = endpoint_url(endpoint) if endpoint else None
        repository.lock_state(session)
        if repository.get_party(session, code) is not None:
            raise EpixError.of("EPIX-REG-010", f"Party {code} is already registered.", "code")
        party = RegistryParty(code=code, name=clean_name, endpoint_url=url, added_at=utcnow())
        session.add(party)
        version = _bump(session)
        session.flush()
        _changed(
            session,
            action="registry.party.add",
            actor=actor,
            party=code,
            request=request,
            detail={"party": code, "name": clean_name, "endpoint_url": url},
            version=version,
        )
        return party


def add_authority(
    session: Session,
    *,
    party: str,
    kind: str,
    name: str,
    contact: str | None = None,
    actor: Principal,
    request: RequestContext | None = None,
) -> RegistryAuthority:
    with refusal_audited(
        session,
        action="registry.authority.add",
        actor=actor,
        party=party,
        request=request,
        attempt={"party": party, "kind": kind, "name": name},
    ):
        require_secretariat(actor)
        code = party_code(party)
        canonical_kind = normalise_kind(kind)
        clean_name = _text(name, "name", 200)
        assert clean_name is not None
        clean_contact = _text(contact, "contact", 500, required=False)
        repository.lock_state(session)
        if repository.get_party(session, code) is None:
            raise EpixError.of("EPIX-REG-001", f"Party {code} is not in the registry.", "party")
        if repository.find_authority(session, code, canonical_kind, clean_name) is not None:
            raise EpixError.of(
                "EPIX-REG-010",
                f"{code} already has a {canonical_kind} named {clean_name!r}.",
                "name",
            )
        authority = RegistryAuthority(
            party_code=code,
            kind=canonical_kind,
            name=clean_name,
            contact=clean_contact,
            added_at=utcnow(),
        )
        session.add(authority)
        version = _bump(session)
        session.flush()
        _changed(
            session,
            action="registry.authority.add",
            actor=actor,
            party=code,
            request=request,
            detail={"authority_id": authority.id, "kind": canonical_kind, "name": clean_name},
            version=version,
        )
        return authority


def one_certificate(pem: bytes, location: str, code: str) -> x509.Certificate:
    """The one PEM certificate ``pem`` holds. A private key in it is EPIX-REG-014 (named, never
    shown: the refusal, its audit event and the logs hold none of it); no certificate or
    several is ``code``."""
    if b"PRIVATE KEY-----" in pem:
        raise EpixError.of(
            "EPIX-REG-014",
            "This holds a private key, which must never leave its authority; send only the "
            "certificate (-----BEGIN CERTIFICATE-----). Nothing of the key was stored. If it "
            "travelled unencrypted, treat it as exposed and generate a new key pair.",
            location,
        )
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise EpixError.of(code, "Not a PEM-encoded X.509 certificate.", location) from None
    if len(certificates) > 1:
        raise EpixError.of(
            code,
            f"The PEM holds {len(certificates)} certificates; give the one signing (leaf) "
            "certificate, without its issuers.",
            location,
        )
    return certificates[0]


def acceptable_certificate(
    pem: bytes, now: datetime, location: str = "certificate"
) -> x509.Certificate:
    """Parse the one signing certificate the registry may hold: a leaf (not a CA) whose key may
    sign, RSA >= 2048 or ECDSA P-256/384, not expired; never a private key, never a bundle."""
    certificate = one_certificate(pem, location, "EPIX-REG-004")
    try:
        public_key = certificate.public_key()
    except (ValueError, TypeError):
        raise EpixError.of(
            "EPIX-REG-004", "The certificate's public key cannot be read.", location
        ) from None
    size = len(certificate.public_bytes(serialization.Encoding.DER))
    if size > MAX_CERTIFICATE_BYTES:
        raise EpixError.of(
            "EPIX-REG-004",
            f"The certificate has {size} bytes; verifiers refuse signing certificates over "
            f"{MAX_CERTIFICATE_BYTES}.",
            location,
        )
    problem = key_problem(public_key) or _usage_problem(certificate)
    if problem:
        raise EpixError.of("EPIX-REG-004", problem, location)
    if certificate.not_valid_after_utc <= now:
        raise EpixError.of(
            "EPIX-REG-004",
            f"The certificate expired on {certificate.not_valid_after_utc.isoformat()}.",
            location,
        )
    return certificate


# What cryptography raises reading a certificate's extensions that are not well-formed DER.
UNREADABLE_EXTENSIONS = (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType)


def _usage_problem(certificate: x509.Certificate) -> str | None:
    """Why the certificate is not a document-signing leaf (EPIX-DSIG-1's KeyInfo carries the
    leaf; a CA key signs certificates, not permits), or None."""
    try:
        extensions = certificate.extensions
    except UNREADABLE_EXTENSIONS:
        return "The certificate's extensions cannot be read: it is malformed."
    try:
        constraints = extensions.get_extension_for_class(x509.BasicConstraints)
        if constraints.value.ca:
            return (
                "This is a CA certificate (basicConstraints CA:TRUE); register the authority's "
                "signing (leaf) certificate, the one its documents carry. With openssl, make it "
                "with -addext basicConstraints=critical,CA:FALSE."
            )
    except x509.ExtensionNotFound:
        pass
    try:
        usage = extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None
    if not (usage.digital_signature or usage.content_commitment):
        return (
            "The certificate's key usage allows neither digitalSignature nor nonRepudiation: "
            "its key may not sign documents."
        )
    return None


def _key_reuse_problem(
    session: Session, certificate: x509.Certificate, authority: RegistryAuthority
) -> str | None:
    """Why the certificate's public key may not be registered for ``authority``, or None.

    One key, one registered certificate. Nothing checks who issued a certificate, so anyone can
    wrap another authority's public key in one of their own; registered, a document that
    authority signed would verify as theirs once the certificate in KeyInfo is swapped. And
    revocation is per certificate: with a second certificate over the same key, revoking one
    after a compromise would leave the key trusted through the other (or, for a key already
    revoked, bring it back).
    """
    key = _public_key_der(certificate)
    for row in repository.all_certificates(session):
        if _public_key_der(load_certificate(row.pem.encode("ascii"))) != key:
            continue
        owner = row.authority
        if row.revoked_at is not None:
            return (
                f"This public key's certificate {row.fingerprint} was revoked at "
                f"{as_utc(row.revoked_at).isoformat()} ({row.revocation_reason}); a revoked key "
                "may not be registered again: generate a new key pair."
            )
        if owner.id != authority.id:
            return (
                f"This public key is already registered in certificate {row.fingerprint} for "
                f"{owner.party_code} {owner.kind} {owner.name!r} (authority {owner.id}); one "
                "key signs for one authority only: generate a new key pair."
            )
        return (
            f"This public key is already registered for this authority in certificate "
            f"{row.fingerprint}; a renewal needs a new key pair, or revoking one certificate "
            "would leave the key trusted through the other."
        )
    return None


def _public_key_der(certificate: x509.Certificate) -> bytes:
    return certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def add_certificate(
    session: Session,
    *,
    authority_id: int,
    pem: bytes,
    roles: Sequence[str] | None = None,
    actor: Principal,
    request: RequestContext | None = None,
) -> RegistryCertificate:
    """Register one more certificate for an authority (an earlier one stays valid: rollover)."""
    with refusal_audited(
        session,
        action="registry.certificate.add",
        actor=actor,
        party=None,
        request=request,
        attempt={"authority_id": authority_id},
    ):
        require_secretariat(actor)
        now = utcnow()
        certificate = acceptable_certificate(pem, now)
        repository.lock_state(session)
        authority = repository.get_authority(session, authority_id)
        if authority is None:
            raise EpixError.of(
                "EPIX-REG-002", f"Authority {authority_id} is not in the registry.", "authority_id"
            )
        chosen_roles = check_roles(authority.kind, tuple(roles) if roles else None)
        fingerprint = fingerprint_of(certificate)
        existing = repository.get_certificate(session, fingerprint)
        if existing is not None:
            owner = existing.authority
            raise EpixError.of(
                "EPIX-REG-003",
                f"Certificate {fingerprint} is already registered for {owner.party_code} "
                f"{owner.kind} {owner.name!r} (authority {owner.id}).",
                "certificate",
            )
        reuse = _key_reuse_problem(session, certificate, authority)
        if reuse:
            raise EpixError.of("EPIX-REG-015", reuse, "certificate")
        row = RegistryCertificate(
            authority_id=authority.id,
            fingerprint=fingerprint,
            pem=certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
            subject=certificate.subject.rfc4514_string()[:500],
            not_before=certificate.not_valid_before_utc,
            not_after=certificate.not_valid_after_utc,
            roles=" ".join(chosen_roles),
            added_by=actor.username,
            added_at=now,
        )
        session.add(row)
        version = _bump(session)
        session.flush()
        _changed(
            session,
            action="registry.certificate.add",
            actor=actor,
            party=authority.party_code,
            request=request,
            detail={
                "authority_id": authority.id,
                "fingerprint": fingerprint,
                "roles": list(chosen_roles),
                "not_before": row.not_before.isoformat(),
                "not_after": row.not_after.isoformat(),
            },
            version=version,
        )
        return row


def revoke_certificate(
    session: Session,
    *,
    fingerprint: str,
    reason: str,
    at: datetime | None = None,
    actor: Principal,
    request: RequestContext | None = None,
) -> RegistryCertificate:
    """Revoke from ``at`` (default now; earlier for a key compromised before it was reported).

    Documents signed before ``at`` keep verifying; documents signed at or after it are refused.
    A revoked certificate may be revoked again only from an earlier time (a revocation
    scheduled for the end of a rollover, brought forward by a compromise), with the new reason.
    """
    with refusal_audited(
        session,
        action="registry.certificate.revoke",
        actor=actor,
        party=None,
        request=request,
        attempt={"fingerprint": fingerprint, "reason": reason},
    ):
        require_secretariat(actor)
        clean_reason = _text(reason, "reason", 500)
        repository.lock_state(session)
        row = repository.get_certificate(session, certificate_fingerprint(fingerprint))
        if row is None:
            raise EpixError.of(
                "EPIX-REG-005", f"Certificate {fingerprint} is not in the registry.", "fingerprint"
            )
        try:
            effective = as_utc(at) if at else utcnow()
        except OverflowError:  # e.g. 9999-12-31T23:59:59-14:00 is past the last UTC year
            raise EpixError.of(
                "EPIX-REQ-004", f"The revocation time {at} is outside the years 1 to 9999.", "at"
            ) from None
        previous = as_utc(row.revoked_at) if row.revoked_at is not None else None
        if previous is not None and previous <= effective:
            raise EpixError.of(
                "EPIX-REG-006",
                f"Certificate {row.fingerprint} was already revoked at {previous.isoformat()}. "
                "A revocation may only be brought earlier (a scheduled one, when the key is "
                "compromised sooner), never later: documents signed in between would become "
                "valid again.",
                "fingerprint",
            )
        row.revoked_at = effective
        row.revocation_reason = clean_reason
        row.revoked_by = actor.username
        version = _bump(session)
        session.flush()
        _changed(
            session,
            action="registry.certificate.revoke",
            actor=actor,
            party=row.authority.party_code,
            request=request,
            detail={
                "fingerprint": row.fingerprint,
                "revoked_at": row.revoked_at.isoformat(),
                "reason": clean_reason,
                "previously_revoked_at": previous.isoformat() if previous else None,
            },
            version=version,
        )
        return row


def set_endpoint(
    session: Session,
    *,
    party: str,
    url: str | None,
    actor: Principal,
    request: RequestContext | None = None,
) -> RegistryParty:
    """Publish (or with None withdraw) the URL where the Party's node receives messages."""
    with refusal_audited(
        session,
        action="registry.endpoint.set",
        actor=actor,
        party=party,
        request=request,
        attempt={"party": party, "endpoint_url": url},
    ):
        require_secretariat(actor)
        code = party_code(party)
        clean_url = endpoint_url(url) if url else None
        repository.lock_state(session)
        row = repository.get_party(session, code)
        if row is None:
            raise EpixError.of("EPIX-REG-001", f"Party {code} is not in the registry.", "party")
        row.endpoint_url = clean_url
        version = _bump(session)
        session.flush()
        _changed(
            session,
            action="registry.endpoint.set",
            actor=actor,
            party=code,
            request=request,
            detail={"party": code, "endpoint_url": clean_url},
            version=version,
        )
        return row


def endpoint_for(session: Session, party: str) -> str | None:
    """Where to deliver to ``party``'s node, or None if it publishes none (hub mode)."""
    row = repository.get_party(session, party)
    return row.endpoint_url if row else None


@dataclass(frozen=True, slots=True)
class ExpiringCertificate:
    """A certificate that stops being valid soon, and whether a successor is registered."""

    fingerprint: str
    party: str
    authority_id: int
    authority_name: str
    kind: str
    not_after: datetime
    days_left: int
    threshold_days: int
    has_successor: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "fingerprint": self.fingerprint,
            "party": self.party,
            "authority_id": self.authority_id,
            "authority_name": self.authority_name,
            "kind": self.kind,
            "not_after": self.not_after.isoformat(),
            "days_left": self.days_left,
            "threshold_days": self.threshold_days,
            "has_successor": self.has_successor,
        }


# How far ahead certificates ending are listed, unless asked otherwise (API and registry page).
EXPIRING_WITHIN_DAYS = 60


def expiring_certificates(
    session: Session, *, now: datetime | None = None, within_days: int = EXPIRING_WITHIN_DAYS
) -> list[ExpiringCertificate]:
    """Unrevoked certificates ending within ``within_days``, bucketed at 7, 30 and 60 days."""
    moment = as_utc(now) if now else utcnow()
    horizon = moment + timedelta(days=within_days)
    rows = repository.unrevoked_certificates(session)
    latest_end: dict[int, datetime] = {}
    for certificate, _authority in rows:
        end = latest_end.get(certificate.authority_id)
        if end is None or certificate.not_after > end:
            latest_end[certificate.authority_id] = certificate.not_after
    found = []
    for certificate, authority in rows:
        if not moment < certificate.not_after <= horizon:
            continue
        days_left = (certificate.not_after - moment).days
        threshold = next(
            (t for t in EXPIRY_THRESHOLDS_DAYS if days_left < t), max(within_days, days_left)
        )
        found.append(
            ExpiringCertificate(
                fingerprint=certificate.fingerprint,
                party=authority.party_code,
                authority_id=authority.id,
                authority_name=authority.name,
                kind=authority.kind,
                not_after=certificate.not_after,
                days_left=days_left,
                threshold_days=threshold,
                has_successor=latest_end[authority.id] > certificate.not_after,
            )
        )
    return found
