"""The registry as plain immutable data, and the trust store over it.

One shape serves both sources of truth: the node's tables (``repository.load_snapshot``) and a
verified Secretariat-signed document (``document.read_registry``). The conversion to the
verifier's ``TrustedCertificate`` lives here once, including "as the registry stood at T".
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from cryptography import x509

from epix.signatures.trust import StaticTrustStore, TrustedCertificate, as_utc


@lru_cache(maxsize=4096)
def load_certificate(pem: bytes) -> x509.Certificate:
    """Parse a registered certificate once per process (verification is the hot path)."""
    return x509.load_pem_x509_certificate(pem)


@dataclass(frozen=True, slots=True)
class CertificateEntry:
    fingerprint: str
    pem: bytes
    subject: str
    not_before: datetime
    not_after: datetime
    roles: tuple[str, ...]
    added_by: str
    added_at: datetime
    revoked_at: datetime | None = None
    revocation_reason: str | None = None
    revoked_by: str | None = None


@dataclass(frozen=True, slots=True)
class AuthorityEntry:
    id: int
    kind: str
    name: str
    contact: str | None
    added_at: datetime
    certificates: tuple[CertificateEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class PartyEntry:
    code: str
    name: str
    endpoint_url: str | None
    added_at: datetime
    authorities: tuple[AuthorityEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class RegistrySnapshot:
    version: int
    issued_at: datetime
    parties: tuple[PartyEntry, ...] = ()
    # Until when the Secretariat vouches this is its current registry; None in documents
    # issued before expiry existed (and in the tables' own snapshot before it is published).
    expires_at: datetime | None = None

    def certificates(self) -> Iterator[tuple[PartyEntry, AuthorityEntry, CertificateEntry]]:
        for party in self.parties:
            for authority in party.authorities:
                for certificate in authority.certificates:
                    yield party, authority, certificate


def trusted_certificates(
    party: str,
    authority_id: int,
    authority_name: str,
    entry: CertificateEntry,
    as_of: datetime | None = None,
) -> list[TrustedCertificate]:
    """One ``TrustedCertificate`` per role the entry may sign for, as the registry stood at
    ``as_of`` (None: now): a certificate added later did not exist then, and a revocation
    recorded to take effect later had not happened yet.
    """
    revoked_at = entry.revoked_at
    if as_of is not None:
        if as_utc(entry.added_at) > as_utc(as_of):
            return []
        if revoked_at is not None and as_utc(revoked_at) > as_utc(as_of):
            revoked_at = None
    certificate = load_certificate(entry.pem)
    return [
        TrustedCertificate.from_certificate(
            certificate,
            party=party,
            role=role,
            authority_id=str(authority_id),
            authority_name=authority_name,
            not_before=entry.not_before,
            not_after=entry.not_after,
            revoked_at=revoked_at,
            revocation_reason=entry.revocation_reason if revoked_at else None,
        )
        for role in entry.roles
    ]


class SnapshotTrustStore:
    """A ``TrustStore`` over a snapshot: what ``epix verify --registry`` and followers use."""

    def __init__(self, snapshot: RegistrySnapshot, as_of: datetime | None = None) -> None:
        self.snapshot = snapshot
        self._store = StaticTrustStore(
            trusted
            for party, authority, entry in snapshot.certificates()
            for trusted in trusted_certificates(
                party.code, authority.id, authority.name, entry, as_of
            )
        )

    def candidates(self, party: str, role: str) -> Sequence[TrustedCertificate]:
        return self._store.candidates(party, role)

    def owner_of(self, fingerprint: str) -> TrustedCertificate | None:
        return self._store.owner_of(fingerprint)
