"""What the verifier may trust: certificates handed in by the caller, never found in the document.

The registry implements ``TrustStore`` over its tables or over a verified registry document;
``StaticTrustStore`` serves tests and the command line. A store answers for a Party and an
authority role and must include revoked and expired certificates too: the verifier itself
decides against the signing time, so it can say *why* a certificate is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization


def fingerprint_of(certificate: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, lower-case hex: the key the registry files it under."""
    return certificate.fingerprint(hashes.SHA256()).hex()


def normalise_role(role: str) -> str:
    """Roles are compared as the registry spells them: ``management-authority`` becomes
    ``management_authority``."""
    return role.strip().lower().replace("-", "_")


def as_utc(moment: datetime) -> datetime:
    """The same instant in UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class TrustedCertificate:
    """A certificate the registry holds for one authority of one Party, with its status.

    ``not_before``/``not_after`` is the registry's window (it may be narrower than the
    certificate's own); the verifier requires the signing time inside both.
    """

    certificate: x509.Certificate
    fingerprint: str
    party: str
    role: str
    authority_id: str
    authority_name: str
    not_before: datetime
    not_after: datetime
    revoked_at: datetime | None = None
    revocation_reason: str | None = None

    @classmethod
    def from_certificate(
        cls,
        certificate: x509.Certificate | bytes,
        *,
        party: str,
        role: str,
        authority_id: str = "",
        authority_name: str = "",
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        revoked_at: datetime | None = None,
        revocation_reason: str | None = None,
    ) -> TrustedCertificate:
        """Build from a certificate object or PEM; the window defaults to the certificate's."""
        if isinstance(certificate, bytes):
            certificate = x509.load_pem_x509_certificate(certificate)
        return cls(
            certificate=certificate,
            fingerprint=fingerprint_of(certificate),
            party=party.upper(),
            role=normalise_role(role),
            authority_id=authority_id,
            authority_name=authority_name,
            not_before=as_utc(not_before or certificate.not_valid_before_utc),
            not_after=as_utc(not_after or certificate.not_valid_after_utc),
            revoked_at=as_utc(revoked_at) if revoked_at else None,
            revocation_reason=revocation_reason,
        )

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def valid_from(self) -> datetime:
        """Start of the window in which both the registry and the certificate allow signing."""
        return max(as_utc(self.not_before), self.certificate.not_valid_before_utc)

    def valid_until(self) -> datetime:
        """End of that window."""
        return min(as_utc(self.not_after), self.certificate.not_valid_after_utc)

    def revoked_by(self, moment: datetime) -> bool:
        """True when the certificate was revoked at or before ``moment``."""
        return self.revoked_at is not None and as_utc(self.revoked_at) <= as_utc(moment)

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly summary (no key material beyond the public certificate's identity)."""
        return {
            "fingerprint": self.fingerprint,
            "party": self.party,
            "role": self.role,
            "authority_id": self.authority_id,
            "authority_name": self.authority_name,
            "subject": self.certificate.subject.rfc4514_string(),
            "not_before": as_utc(self.not_before).isoformat(),
            "not_after": as_utc(self.not_after).isoformat(),
            "revoked_at": as_utc(self.revoked_at).isoformat() if self.revoked_at else None,
            "revocation_reason": self.revocation_reason,
        }


class TrustStore(Protocol):
    """The registry as the verifier sees it."""

    def candidates(self, party: str, role: str) -> Sequence[TrustedCertificate]:
        """Every certificate registered for this Party and role, revoked and expired included."""
        ...

    def owner_of(self, fingerprint: str) -> TrustedCertificate | None:
        """The registration of a certificate under any Party, to name a signer bound elsewhere."""
        ...


class StaticTrustStore:
    """An in-memory ``TrustStore`` for tests, the CLI and single-file registries."""

    def __init__(self, certificates: Iterable[TrustedCertificate] = ()) -> None:
        self._certificates: list[TrustedCertificate] = list(certificates)

    def add(self, certificate: TrustedCertificate) -> None:
        self._certificates.append(certificate)

    def candidates(self, party: str, role: str) -> Sequence[TrustedCertificate]:
        party, role = party.upper(), normalise_role(role)
        return [c for c in self._certificates if c.party.upper() == party and c.role == role]

    def owner_of(self, fingerprint: str) -> TrustedCertificate | None:
        fingerprint = fingerprint.lower()
        return next((c for c in self._certificates if c.fingerprint == fingerprint), None)
