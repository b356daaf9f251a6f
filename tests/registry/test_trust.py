"""The registry as the verifier's trust store: rollover, revocation in time, Party binding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from epix.db import Database
from epix.errors import EpixError
from epix.registry import service
from epix.registry.trust import RegistryTrustStore
from epix.signatures import sign_document, verify_document
from tests.pki import Identity
from tests.registry.conftest import PERMIT_XML, SECRETARIAT, Populated, ec_identity


def verify_as(
    database: Database,
    identity: Identity,
    *,
    party: str = "XA",
    role: str = "management_authority",
    at: datetime | None = None,
    as_of: datetime | None = None,
) -> list[str]:
    signed = sign_document(PERMIT_XML, identity.key_pem, identity.cert_pem)
    with database.unit_of_work() as session:
        verdict = verify_document(
            signed, party=party, role=role, trust=RegistryTrustStore(session, as_of), at=at
        )
    return verdict.codes if not verdict.valid else []


def test_rollover_accepts_old_and_new_in_the_overlap_and_refuses_old_after_its_end(
    database: Database, populated: Populated
) -> None:
    moment = datetime.now(UTC)
    old = ec_identity(
        "XA MA 2025", not_before=moment - timedelta(days=300), not_after=moment + timedelta(days=2)
    )
    new = ec_identity("XA MA 2026", not_before=moment - timedelta(days=1))
    with database.unit_of_work() as session:
        for identity in (old, new):
            service.add_certificate(
                session, authority_id=populated.xa_ma, pem=identity.cert_pem, actor=SECRETARIAT
            )
    assert verify_as(database, old) == []
    assert verify_as(database, new) == []
    after_old_end = moment + timedelta(days=3)
    assert verify_as(database, old, at=after_old_end) == ["EPIX-SIG-014"]
    assert verify_as(database, new, at=after_old_end) == []


def test_revoked_certificate_is_refused_after_the_revocation_and_accepted_before(
    database: Database, populated: Populated
) -> None:
    identity = populated.xa_ma_identity
    revoked_at = datetime.now(UTC) - timedelta(hours=1)
    with database.unit_of_work() as session:
        service.revoke_certificate(
            session,
            fingerprint=identity.fingerprint,
            reason="key compromise",
            at=revoked_at,
            actor=SECRETARIAT,
        )
    assert verify_as(database, identity, at=revoked_at - timedelta(hours=2)) == []
    assert verify_as(database, identity) == ["EPIX-SIG-013"]


def test_registry_as_it_stood_ignores_later_revocations_and_later_certificates(
    database: Database, populated: Populated
) -> None:
    identity = populated.xa_ma_identity
    before_revocation = datetime.now(UTC)
    with database.unit_of_work() as session:
        service.revoke_certificate(
            session, fingerprint=identity.fingerprint, reason="retired", actor=SECRETARIAT
        )
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert verify_as(database, identity, at=later) == ["EPIX-SIG-013"]
    assert verify_as(database, identity, at=later, as_of=before_revocation) == []
    before_registration = datetime.now(UTC) - timedelta(hours=1)
    assert verify_as(database, identity, at=before_registration, as_of=before_registration) == [
        "EPIX-SIG-012"
    ]


def test_signer_of_another_party_is_refused(database: Database, populated: Populated) -> None:
    assert verify_as(database, populated.xb_ma_identity, party="XA") == ["EPIX-SIG-015"]
    assert verify_as(database, populated.xb_ma_identity, party="XB") == []


def test_certificate_is_only_good_for_its_role(database: Database, populated: Populated) -> None:
    assert verify_as(database, populated.xa_ma_identity, role="customs") == ["EPIX-SIG-012"]


def test_unregistered_certificate_is_refused(database: Database, populated: Populated) -> None:
    assert verify_as(database, ec_identity("stranger")) == ["EPIX-SIG-012"]


def test_a_scheduled_revocation_can_be_brought_forward_after_a_compromise_but_never_later(
    database: Database, populated: Populated
) -> None:
    """Rollover: the old certificate is revoked from the end of the overlap, a month ahead.
    Its key is then reported stolen: the revocation must take effect now (or earlier), not
    when the schedule says, or the thief's signatures verify for a month."""
    identity = populated.xa_ma_identity
    moment = datetime.now(UTC)
    with database.unit_of_work() as session:
        service.revoke_certificate(
            session,
            fingerprint=identity.fingerprint,
            reason="superseded",
            at=moment + timedelta(days=30),
            actor=SECRETARIAT,
        )
    assert verify_as(database, identity) == []
    stolen = moment - timedelta(hours=2)
    with database.unit_of_work() as session:
        row = service.revoke_certificate(
            session,
            fingerprint=identity.fingerprint,
            reason="key compromise",
            at=stolen,
            actor=SECRETARIAT,
        )
        assert row.revocation_reason == "key compromise"
    assert verify_as(database, identity) == ["EPIX-SIG-013"]
    assert verify_as(database, identity, at=stolen - timedelta(hours=1)) == []
    # Moving it later would make the thief's signatures valid again.
    with database.unit_of_work() as session, pytest.raises(EpixError) as exc:
        service.revoke_certificate(
            session,
            fingerprint=identity.fingerprint,
            reason="it was not stolen after all",
            at=moment,
            actor=SECRETARIAT,
        )
    assert [f.code for f in exc.value.findings] == ["EPIX-REG-006"]
    assert "earlier" in exc.value.findings[0].message
