"""Trust comes only from the store, bound to Party and role and judged at the signing time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from epix.signatures import StaticTrustStore, sign_document, verify_document
from tests.pki import Identity, make_identity
from tests.signatures.conftest import PARTY, ROLE, permit_document, register

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def signed_by(identity: Identity) -> bytes:
    return sign_document(permit_document(), identity.key_pem, identity.cert_pem)


def verdict_codes(
    document: bytes, trust: StaticTrustStore, at: datetime | None = None
) -> list[str]:
    return verify_document(document, party=PARTY, role=ROLE, trust=trust, at=at).codes


def test_certificate_not_in_the_store_is_refused(rsa_identity: Identity) -> None:
    stranger = make_identity(kind="ec", size=256)
    store = StaticTrustStore([register(rsa_identity)])

    assert verdict_codes(signed_by(stranger), store) == ["EPIX-SIG-012"]


def test_certificate_of_another_party_is_refused(other_party_identity: Identity) -> None:
    store = StaticTrustStore([register(other_party_identity, party="XB")])
    document = signed_by(other_party_identity)

    assert verdict_codes(document, store) == ["EPIX-SIG-015"]
    assert verify_document(document, party="XB", role=ROLE, trust=store).valid


def test_certificate_registered_for_another_role_is_refused(ec_identity: Identity) -> None:
    store = StaticTrustStore([register(ec_identity, role="customs")])

    verdict = verify_document(signed_by(ec_identity), party=PARTY, role=ROLE, trust=store)

    assert verdict.codes == ["EPIX-SIG-012"]
    assert "customs" in verdict.findings[0].message


def test_certificate_in_the_document_alone_is_never_trusted(ec_identity: Identity) -> None:
    assert verdict_codes(signed_by(ec_identity), StaticTrustStore()) == ["EPIX-SIG-012"]


def test_certificate_revoked_before_signing_is_refused(ec_identity: Identity) -> None:
    now = datetime.now(UTC)
    store = StaticTrustStore(
        [register(ec_identity, revoked_at=now - timedelta(hours=1), revocation_reason="key lost")]
    )

    verdict = verify_document(signed_by(ec_identity), party=PARTY, role=ROLE, trust=store, at=now)

    assert verdict.codes == ["EPIX-SIG-013"]
    assert "key lost" in verdict.findings[0].message


def test_certificate_revoked_at_the_signing_instant_is_refused(ec_identity: Identity) -> None:
    now = datetime.now(UTC)
    store = StaticTrustStore([register(ec_identity, revoked_at=now)])

    assert verdict_codes(signed_by(ec_identity), store, at=now) == ["EPIX-SIG-013"]


def test_document_signed_before_revocation_is_accepted(ec_identity: Identity) -> None:
    now = datetime.now(UTC)
    store = StaticTrustStore([register(ec_identity, revoked_at=now)])

    verdict = verify_document(
        signed_by(ec_identity), party=PARTY, role=ROLE, trust=store, at=now - timedelta(hours=2)
    )

    assert verdict.valid, verdict.findings


def test_certificate_expired_at_signing_is_refused() -> None:
    old = make_identity(kind="ec", size=256, not_before=T0, not_after=T0 + timedelta(days=30))
    store = StaticTrustStore([register(old)])

    assert verdict_codes(signed_by(old), store) == ["EPIX-SIG-014"]


def test_archived_document_verifies_at_its_signing_time() -> None:
    old = make_identity(kind="ec", size=256, not_before=T0, not_after=T0 + timedelta(days=30))
    store = StaticTrustStore([register(old)])

    assert verdict_codes(signed_by(old), store, at=T0 + timedelta(days=10)) == []


def test_certificate_not_yet_valid_is_refused(ec_identity: Identity) -> None:
    store = StaticTrustStore([register(ec_identity)])
    before = ec_identity.certificate.not_valid_before_utc - timedelta(minutes=1)

    assert verdict_codes(signed_by(ec_identity), store, at=before) == ["EPIX-SIG-014"]


def test_registry_window_narrower_than_the_certificate_is_enforced(ec_identity: Identity) -> None:
    now = datetime.now(UTC)
    store = StaticTrustStore([register(ec_identity, not_after=now - timedelta(minutes=5))])

    assert verdict_codes(signed_by(ec_identity), store, at=now) == ["EPIX-SIG-014"]


def test_rollover_accepts_both_certificates_in_the_overlap_and_the_old_one_not_after() -> None:
    old = make_identity(kind="rsa", size=2048, not_before=T0, not_after=T0 + timedelta(days=60))
    new = make_identity(
        kind="ec", size=256, not_before=T0 + timedelta(days=45), not_after=T0 + timedelta(days=400)
    )
    store = StaticTrustStore([register(old), register(new)])
    by_old, by_new = signed_by(old), signed_by(new)
    overlap, after = T0 + timedelta(days=50), T0 + timedelta(days=61)

    assert verdict_codes(by_old, store, at=overlap) == []
    assert verdict_codes(by_new, store, at=overlap) == []
    assert verdict_codes(by_old, store, at=after) == ["EPIX-SIG-014"]
    assert verdict_codes(by_new, store, at=after) == []
    matched = verify_document(by_new, party=PARTY, role=ROLE, trust=store, at=after).certificate
    assert matched is not None and matched.fingerprint == new.fingerprint


def test_verification_time_defaults_to_now(ec_identity: Identity) -> None:
    store = StaticTrustStore([register(ec_identity)])
    before = datetime.now(UTC)

    verdict = verify_document(signed_by(ec_identity), party=PARTY, role=ROLE, trust=store)

    assert before <= verdict.signing_time <= datetime.now(UTC)
