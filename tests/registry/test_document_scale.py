"""A registry larger than a permit may be: publishing signs what following accepts."""

from __future__ import annotations

from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from epix.db import Database, utcnow
from epix.registry import repository
from epix.registry.document import MAX_DOCUMENT_BYTES, publish, read_registry
from epix.registry.snapshot import AuthorityEntry, CertificateEntry, PartyEntry, RegistrySnapshot
from epix.signatures.trust import fingerprint_of
from epix.xml.parse import DEFAULT_MAX_BYTES
from tests.pki import Identity
from tests.registry.conftest import WEEK

CERTIFICATES = 6_500  # about 6 MB published: over a permit's 5 MB, far under the registry's 32


def _snapshot() -> RegistrySnapshot:
    """XA's management authority with ``CERTIFICATES`` certificates (one key: fast)."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = utcnow() - timedelta(days=1)
    entries = []
    for serial in range(1, CERTIFICATES + 1):
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"XA MA key {serial:054d}")])
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(start)
            .not_valid_after(start + timedelta(days=365))
            .sign(key, hashes.SHA256())
        )
        entries.append(
            CertificateEntry(
                fingerprint=fingerprint_of(certificate),
                pem=certificate.public_bytes(serialization.Encoding.PEM),
                subject=certificate.subject.rfc4514_string(),
                not_before=start,
                not_after=start + timedelta(days=365),
                roles=("management_authority",),
                added_by="secretariat",
                added_at=start,
            )
        )
    authority = AuthorityEntry(1, "management_authority", "XA MA", None, start, tuple(entries))
    party = PartyEntry("XA", "Exampleland", None, start, (authority,))
    return RegistrySnapshot(version=1, issued_at=start, parties=(party,))


def test_a_registry_over_a_permits_size_limit_is_published_and_followed(
    database: Database, secretariat_identity: Identity
) -> None:
    """Publishing parsed the rendered registry with a permit's 5 MB limit (EPIX-XML-004 from
    about 7,900 certificates), though a follower takes 32 MB: 18,928 certificates (12.6 MB)
    could not be published at all."""
    with database.unit_of_work() as session:
        repository.replace_all(session, _snapshot())
        repository.lock_state(session).version = 1
    with database.unit_of_work() as session:
        published = publish(
            session, secretariat_identity.key_pem, secretariat_identity.cert_pem, validity=WEEK
        ).content
    assert DEFAULT_MAX_BYTES < len(published) < MAX_DOCUMENT_BYTES
    verified = read_registry(published, secretariat_identity.cert_pem)
    assert sum(1 for _ in verified.snapshot.certificates()) == CERTIFICATES
