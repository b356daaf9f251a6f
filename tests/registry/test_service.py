"""Registry changes: validation, duplicates, revocation, Secretariat-only, versioned and audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import hashes
from sqlalchemy import select

from epix.audit.models import AuditEvent
from epix.db import Database
from epix.errors import EpixError
from epix.registry import repository, service
from tests.pki import make_identity
from tests.registry.conftest import MA_USER, SECRETARIAT, Populated, ec_identity


def codes(exc: pytest.ExceptionInfo[EpixError]) -> list[str]:
    return [finding.code for finding in exc.value.findings]


def test_added_parties_authorities_and_certificates_are_listed(
    database: Database, populated: Populated
) -> None:
    with database.unit_of_work() as session:
        parties = repository.list_parties(session)
        assert [p.code for p in parties] == ["XA", "XB"]
        assert parties[1].endpoint_url == "https://xb.example"
        xa = parties[0]
        assert [(a.kind, a.name) for a in xa.authorities] == [
            ("management_authority", "XA CITES MA"),
            ("customs", "XA Customs"),
        ]
        (certificate,) = xa.authorities[0].certificates
        assert certificate.fingerprint == populated.xa_ma_identity.fingerprint
        assert certificate.roles == "management_authority"
        assert certificate.added_by == SECRETARIAT.username
        assert service.endpoint_for(session, "xb") == "https://xb.example"
        assert service.endpoint_for(session, "XA") is None


def test_every_change_increments_the_version_and_writes_an_audit_event(
    database: Database, populated: Populated
) -> None:
    with database.unit_of_work() as session:
        assert repository.current_version(session) == 7
        service.revoke_certificate(
            session,
            fingerprint=populated.xb_ma_identity.fingerprint,
            reason="key compromise",
            actor=SECRETARIAT,
        )
        assert repository.current_version(session) == 8
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.action.like("registry.%"))
        ).all()
    assert [e.action for e in events] == [
        "registry.party.add",
        "registry.party.add",
        "registry.authority.add",
        "registry.authority.add",
        "registry.authority.add",
        "registry.certificate.add",
        "registry.certificate.add",
        "registry.certificate.revoke",
    ]
    assert all(e.actor_username == SECRETARIAT.username for e in events)
    assert '"registry_version":8' in events[-1].detail


def test_only_the_secretariat_may_change_the_registry(database: Database) -> None:
    with database.unit_of_work() as session, pytest.raises(EpixError) as exc:
        service.add_party(session, code="XA", name="Exampleland", actor=MA_USER)
    assert codes(exc) == ["EPIX-AUTH-004"]


def test_duplicates_are_refused(database: Database, populated: Populated) -> None:
    with database.unit_of_work() as session:
        with pytest.raises(EpixError) as exc:
            service.add_party(session, code="xa", name="Again", actor=SECRETARIAT)
        assert codes(exc) == ["EPIX-REG-010"]
        with pytest.raises(EpixError) as exc:
            service.add_authority(
                session, party="XA", kind="customs", name="XA Customs", actor=SECRETARIAT
            )
        assert codes(exc) == ["EPIX-REG-010"]
        with pytest.raises(EpixError) as exc:
            service.add_certificate(
                session,
                authority_id=populated.xa_customs,
                pem=populated.xa_ma_identity.cert_pem,
                actor=SECRETARIAT,
            )
        assert codes(exc) == ["EPIX-REG-003"]
        # The operator learns whose it is, not only that it exists.
        assert f"XA management_authority 'XA CITES MA' (authority {populated.xa_ma})" in (
            exc.value.findings[0].message
        )


@pytest.mark.parametrize(
    "pem",
    [
        pytest.param(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", id="junk"),
        pytest.param(b"not a certificate", id="not-pem"),
        pytest.param(make_identity("weak", kind="rsa", size=1024).cert_pem, id="rsa-1024"),
        pytest.param(make_identity("p521", kind="ec", size=521).cert_pem, id="curve-p521"),
        pytest.param(
            make_identity(
                "expired",
                kind="ec",
                size=256,
                not_before=datetime(2020, 1, 1, tzinfo=UTC),
                not_after=datetime(2021, 1, 1, tzinfo=UTC),
            ).cert_pem,
            id="expired",
        ),
    ],
)
def test_unacceptable_certificates_are_refused(sqlite_database: Database, pem: bytes) -> None:
    with sqlite_database.unit_of_work() as session:
        service.add_party(session, code="XA", name="Exampleland", actor=SECRETARIAT)
        authority = service.add_authority(
            session, party="XA", kind="customs", name="XA Customs", actor=SECRETARIAT
        )
        with pytest.raises(EpixError) as exc:
            service.add_certificate(session, authority_id=authority.id, pem=pem, actor=SECRETARIAT)
    assert codes(exc) == ["EPIX-REG-004"]


def test_invalid_codes_kinds_roles_and_endpoints_are_refused(
    database: Database, populated: Populated
) -> None:
    identity = ec_identity("XA customs (TEST)")
    attempts = [
        ("EPIX-CODE-007", lambda s: service.add_party(s, code="X1", name="n", actor=SECRETARIAT)),
        (
            "EPIX-REG-001",
            lambda s: service.add_authority(
                s, party="XC", kind="customs", name="n", actor=SECRETARIAT
            ),
        ),
        (
            "EPIX-REG-013",
            lambda s: service.add_authority(
                s, party="XA", kind="police", name="n", actor=SECRETARIAT
            ),
        ),
        (
            "EPIX-REG-013",
            lambda s: service.add_certificate(
                s,
                authority_id=populated.xa_customs,
                pem=identity.cert_pem,
                roles=["management_authority"],
                actor=SECRETARIAT,
            ),
        ),
        (
            "EPIX-REG-002",
            lambda s: service.add_certificate(
                s, authority_id=999, pem=identity.cert_pem, actor=SECRETARIAT
            ),
        ),
        (
            "EPIX-REG-012",
            lambda s: service.set_endpoint(
                s, party="XA", url="ftp://xa.example", actor=SECRETARIAT
            ),
        ),
        (
            "EPIX-REG-012",
            lambda s: service.set_endpoint(
                s, party="XA", url="https://user:pw@xa.example", actor=SECRETARIAT
            ),
        ),
        ("EPIX-REQ-004", lambda s: service.add_party(s, code="XD", name=" ", actor=SECRETARIAT)),
    ]
    for expected, attempt in attempts:
        with database.unit_of_work() as session, pytest.raises(EpixError) as exc:
            attempt(session)
        assert codes(exc) == [expected]


def test_revoking_twice_or_an_unknown_certificate_is_refused(
    database: Database, populated: Populated
) -> None:
    fingerprint = populated.xa_ma_identity.fingerprint
    with database.unit_of_work() as session:
        revoked = service.revoke_certificate(
            session, fingerprint=fingerprint.upper(), reason="superseded", actor=SECRETARIAT
        )
        assert revoked.revoked_by == SECRETARIAT.username
        with pytest.raises(EpixError) as exc:
            service.revoke_certificate(
                session, fingerprint=fingerprint, reason="again", actor=SECRETARIAT
            )
        assert codes(exc) == ["EPIX-REG-006"]
        with pytest.raises(EpixError) as exc:
            service.revoke_certificate(
                session, fingerprint="ab" * 32, reason="unknown", actor=SECRETARIAT
            )
        assert codes(exc) == ["EPIX-REG-005"]


def test_set_endpoint_publishes_and_withdraws_a_node_url(
    database: Database, populated: Populated
) -> None:
    with database.unit_of_work() as session:
        service.set_endpoint(session, party="XA", url="https://xa.example/epix/", actor=SECRETARIAT)
        assert service.endpoint_for(session, "XA") == "https://xa.example/epix"
        service.set_endpoint(session, party="XA", url=None, actor=SECRETARIAT)
        assert service.endpoint_for(session, "XA") is None


def test_expiring_certificates_are_bucketed_at_7_30_and_60_days(database: Database) -> None:
    moment = datetime.now(UTC)
    soon = ec_identity("soon", not_after=moment + timedelta(days=5))
    month = ec_identity("month", not_after=moment + timedelta(days=20))
    two_months = ec_identity("two months", not_after=moment + timedelta(days=45))
    later = ec_identity("later", not_after=moment + timedelta(days=200))
    with database.unit_of_work() as session:
        service.add_party(session, code="XA", name="Exampleland", actor=SECRETARIAT)
        authority = service.add_authority(
            session, party="XA", kind="node", name="XA node", actor=SECRETARIAT
        )
        for identity in (soon, month, two_months, later):
            service.add_certificate(
                session, authority_id=authority.id, pem=identity.cert_pem, actor=SECRETARIAT
            )
        service.revoke_certificate(
            session, fingerprint=month.fingerprint, reason="retired", actor=SECRETARIAT
        )
        found = service.expiring_certificates(session, now=moment)
        assert [(e.fingerprint, e.threshold_days) for e in found] == [
            (soon.fingerprint, 7),
            (two_months.fingerprint, 60),
        ]
        assert all(e.has_successor for e in found)
        assert [e.fingerprint for e in service.expiring_certificates(session, within_days=7)] == [
            soon.fingerprint
        ]


def test_a_refused_change_is_audited_with_its_code_and_leaves_no_change(
    database: Database, populated: Populated
) -> None:
    with database.unit_of_work() as session:
        with pytest.raises(EpixError) as duplicate:
            service.add_party(session, code="xa", name="Again", actor=SECRETARIAT)
        with pytest.raises(EpixError) as not_secretariat:
            service.set_endpoint(session, party="XA", url="https://xa.example", actor=MA_USER)
        with pytest.raises(EpixError) as unknown:
            service.add_authority(session, party="XQ", kind="customs", name="n", actor=SECRETARIAT)
        assert codes(duplicate) + codes(not_secretariat) + codes(unknown) == [
            "EPIX-REG-010",
            "EPIX-AUTH-004",
            "EPIX-REG-001",
        ]
        assert repository.current_version(session) == 7
        assert service.endpoint_for(session, "XA") is None
        refused = session.scalars(
            select(AuditEvent).where(AuditEvent.outcome != "ok").order_by(AuditEvent.sequence)
        ).all()
    assert [(e.action, e.outcome, e.party, e.actor_username) for e in refused] == [
        ("registry.party.add", "EPIX-REG-010", "XA", SECRETARIAT.username),
        ("registry.endpoint.set", "EPIX-AUTH-004", "XA", MA_USER.username),
        ("registry.authority.add", "EPIX-REG-001", "XQ", SECRETARIAT.username),
    ]
    assert "already registered" in refused[0].detail


@pytest.mark.parametrize(
    "url",
    [
        "https://xa.example:65536/epix",
        "https://xa.example:99999",
        "http://xa.example:0/",
        "https://xa.example:-1/",
        "https://xa.example:port/",
        "gopher://xa.example/",
        "file:///etc/passwd",
        "xa.example:8443",
    ],
)
def test_a_node_endpoint_with_a_bad_port_or_scheme_is_refused(url: str) -> None:
    with pytest.raises(EpixError) as exc:
        service.endpoint_url(url)
    assert codes(exc) == ["EPIX-REG-012"]
    assert exc.value.findings[0].location == "endpoint_url"


def test_a_node_endpoint_with_an_explicit_valid_port_is_kept() -> None:
    assert (
        service.endpoint_url(" https://xa.example:65535/epix/ ") == "https://xa.example:65535/epix"
    )


@pytest.mark.parametrize(
    "url", ["http://xa.example/epix", "http://192.0.2.7:8000", "HTTP://xa.example"]
)
def test_a_node_endpoint_in_plain_http_beyond_loopback_is_refused(url: str) -> None:
    """Permits and the peer's API key would travel in clear."""
    with pytest.raises(EpixError) as exc:
        service.endpoint_url(url)
    assert codes(exc) == ["EPIX-REG-012"]
    assert "plain http" in exc.value.findings[0].message


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8001",
        "http://127.9.9.9:8001",
        "http://[::1]:8001",
        "http://localhost:8001",
    ],
)
def test_a_node_endpoint_in_plain_http_on_loopback_is_kept(url: str) -> None:
    assert service.endpoint_url(url) == url


def test_revocation_takes_the_fingerprint_as_openssl_prints_it_and_names_a_sha1_one(
    database: Database, populated: Populated
) -> None:
    """``openssl x509 -fingerprint -sha256`` prints AB:CD:…; its default is SHA-1. Neither may
    answer "not in the registry" for a registered certificate an operator is trying to revoke."""
    certificate = populated.xa_ma_identity.certificate
    sha1 = certificate.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - what openssl prints
    with database.unit_of_work() as session:
        with pytest.raises(EpixError) as exc:
            service.revoke_certificate(
                session,
                fingerprint=":".join(sha1[i : i + 2] for i in range(0, 40, 2)),
                reason="key compromise",
                actor=SECRETARIAT,
            )
        assert codes(exc) == ["EPIX-REG-005"]
        assert "SHA-1" in exc.value.findings[0].message
        assert "-sha256" in exc.value.findings[0].message
        colons = ":".join(
            populated.xa_ma_identity.fingerprint.upper()[i : i + 2] for i in range(0, 64, 2)
        )
        revoked = service.revoke_certificate(
            session, fingerprint=f" {colons}\n", reason="key compromise", actor=SECRETARIAT
        )
        assert revoked.fingerprint == populated.xa_ma_identity.fingerprint
        assert revoked.revoked_at is not None
