"""``RegistryTrustStore``: the verifier's view of the registry tables.

The store only supplies data; the single trust decision (window, revocation, role, Party
binding against the signing time) is taken by ``epix.signatures.verify_document``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from epix.registry import repository
from epix.registry.freshness import require_current_registry
from epix.registry.snapshot import trusted_certificates
from epix.signatures.trust import TrustedCertificate


class RegistryTrustStore:
    """Certificates that could sign for Party P as role R, as the registry stood at ``as_of``.

    ``as_of`` None answers from the registry as it is now; a time answers for an archived
    document: certificates added later are unknown, revocations dated later had not happened.
    On a follower whose copy expired longer ago than the grace period, no store is made
    (EPIX-REG-017): a frozen copy may lack revocations the Secretariat published since.
    """

    def __init__(self, session: Session, as_of: datetime | None = None) -> None:
        require_current_registry(session)
        self.session = session
        self.as_of = as_of

    def candidates(self, party: str, role: str) -> Sequence[TrustedCertificate]:
        found: list[TrustedCertificate] = []
        for registered in repository.certificates_of_party(self.session, party):
            if role not in registered.entry.roles:
                continue
            found += [
                trusted
                for trusted in trusted_certificates(
                    registered.party,
                    registered.authority_id,
                    registered.authority_name,
                    registered.entry,
                    self.as_of,
                )
                if trusted.role == role
            ]
        return found

    def owner_of(self, fingerprint: str) -> TrustedCertificate | None:
        certificate = repository.get_certificate(self.session, fingerprint)
        if certificate is None:
            return None
        authority = certificate.authority
        trusted = trusted_certificates(
            authority.party_code,
            authority.id,
            authority.name,
            repository.entry_of(certificate),
            self.as_of,
        )
        return trusted[0] if trusted else None
