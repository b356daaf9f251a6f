"""What the Secretariat may register as an authority's signing certificate: operator mistakes
(a private key, a bundle, a CA certificate) and key reuse (one key for two authorities, a
revoked key in a new certificate) are refused with a code, before anything is stored."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree
from sqlalchemy import select

from epix.audit.models import AuditEvent
from epix.cli.main import cli
from epix.db import Database
from epix.errors import EpixError
from epix.registry import repository, service
from epix.registry.trust import RegistryTrustStore
from epix.settings import get_settings
from epix.signatures import sign_document, verify_document
from epix.xml.namespaces import DSIG
from tests.pki import garbled_extension_certificate, make_certificate, make_key
from tests.registry.conftest import PERMIT_XML, SECRETARIAT, Populated, ec_identity


def codes(exc: pytest.ExceptionInfo[EpixError]) -> list[str]:
    return [finding.code for finding in exc.value.findings]


def pem_of(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def key_usage(*, sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=False,
        key_encipherment=not sign,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=not sign,
        crl_sign=not sign,
        encipher_only=False,
        decipher_only=False,
    )


def register(database: Database, authority_id: int, pem: bytes) -> None:
    with database.unit_of_work() as session:
        service.add_certificate(session, authority_id=authority_id, pem=pem, actor=SECRETARIAT)


def refusal(database: Database, authority_id: int, pem: bytes) -> EpixError:
    with pytest.raises(EpixError) as exc:
        register(database, authority_id, pem)
    return exc.value


def key_body(key_pem: bytes) -> bytes:
    """The base64 lines of a PEM private key: what must never be echoed, stored or logged."""
    return b"".join(line for line in key_pem.splitlines() if not line.startswith(b"-----"))


@pytest.mark.parametrize("with_certificate", [False, True], ids=["key-alone", "key-and-cert"])
def test_a_private_key_is_refused_and_never_echoed_stored_or_logged(
    database: Database,
    populated: Populated,
    with_certificate: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    identity = ec_identity("XA customs (TEST)")
    pem = identity.key_pem + (identity.cert_pem if with_certificate else b"")
    caplog.set_level(logging.DEBUG)
    error = refusal(database, populated.xa_customs, pem)
    assert [f.code for f in error.findings] == ["EPIX-REG-014"]
    secret = key_body(identity.key_pem)
    assert secret[:40].decode() not in str(error.findings)
    assert secret[:40].decode() not in caplog.text
    with database.unit_of_work() as session:
        assert repository.get_certificate(session, identity.fingerprint) is None


@pytest.mark.parametrize(
    ("make_pem", "says"),
    [
        pytest.param(
            lambda: ec_identity("leaf").cert_pem + ec_identity("other").cert_pem,
            "2 certificates",
            id="bundle-of-two",
        ),
        pytest.param(
            lambda: pem_of(_ca_certificate(key_usage=None)), "CA certificate", id="ca-true"
        ),
        pytest.param(
            lambda: pem_of(_leaf_certificate(key_usage(sign=False))),
            "digitalSignature",
            id="key-usage-without-signing",
        ),
        pytest.param(lambda: pem_of(_bulky_certificate()), "bytes", id="oversized"),
        pytest.param(
            lambda: pem_of(garbled_extension_certificate()),
            "extensions cannot be read",
            id="unreadable-extension",  # was a ValueError: a 500, a CLI traceback
        ),
    ],
)
def test_a_bundle_a_ca_or_a_non_signing_certificate_is_refused(
    database: Database, populated: Populated, make_pem: Callable[[], bytes], says: str
) -> None:
    error = refusal(database, populated.xa_customs, make_pem())
    assert [f.code for f in error.findings] == ["EPIX-REG-004"]
    assert says in error.findings[0].message


def _ca_certificate(key_usage: x509.KeyUsage | None) -> x509.Certificate:
    key = make_key("ec", 256)
    return make_certificate(key.public_key(), key, "XA CA (TEST)", ca=True, key_usage=key_usage)


def _leaf_certificate(usage: x509.KeyUsage) -> x509.Certificate:
    key = make_key("ec", 256)
    return make_certificate(key.public_key(), key, "XA encryption (TEST)", key_usage=usage)


def _bulky_certificate() -> x509.Certificate:
    key = make_key("ec", 256)
    return make_certificate(key.public_key(), key, "XA bulky (TEST)", padding=60_000)


def test_a_leaf_whose_key_usage_allows_signing_is_registered(
    database: Database, populated: Populated
) -> None:
    certificate = _leaf_certificate(key_usage(sign=True))
    register(database, populated.xa_customs, pem_of(certificate))


def _swap_certificate(signed: bytes, certificate: x509.Certificate) -> bytes:
    """The document with another certificate in KeyInfo; SignedInfo and the value untouched."""
    root = etree.fromstring(signed)
    element = root.find(f".//{{{DSIG}}}X509Certificate")
    assert element is not None
    der = certificate.public_bytes(serialization.Encoding.DER)
    element.text = base64.b64encode(der).decode("ascii")
    return etree.tostring(root)


def test_another_partys_public_key_in_a_new_certificate_is_refused(
    database: Database, populated: Populated
) -> None:
    """Key substitution: XB wraps XA's public key in a certificate of its own (nothing checks
    who signed a certificate, and XB needs no private key of XA for it). Registered, XA's
    signed documents would verify as XB's once the certificate in KeyInfo is swapped."""
    xa_key = populated.xa_ma_identity.certificate.public_key()
    xb_key = make_key("ec", 256)
    wrapped = make_certificate(xa_key, xb_key, "XB MA (TEST)", party="XB")  # type: ignore[arg-type]
    error = refusal(database, populated.xb_ma, pem_of(wrapped))
    assert [f.code for f in error.findings] == ["EPIX-REG-015"]
    assert "XA" in error.findings[0].message
    # Nor for another authority of the same Party: customs could pass for the MA.
    error = refusal(database, populated.xa_customs, pem_of(wrapped))
    assert [f.code for f in error.findings] == ["EPIX-REG-015"]
    identity = populated.xa_ma_identity
    swapped = _swap_certificate(
        sign_document(PERMIT_XML, identity.key_pem, identity.cert_pem), wrapped
    )
    with database.unit_of_work() as session:
        verdict = verify_document(
            swapped, party="XB", role="management_authority", trust=RegistryTrustStore(session)
        )
    assert verdict.codes == ["EPIX-SIG-012"]


def test_the_same_key_in_a_second_certificate_for_its_own_authority_is_refused(
    database: Database, populated: Populated
) -> None:
    """Revocation is per certificate: were a renewal over the same key registered, revoking the
    old certificate after a compromise would leave the stolen key trusted through the new one."""
    identity = populated.xa_ma_identity
    key = serialization.load_pem_private_key(identity.key_pem, password=None)
    renewed = make_certificate(
        identity.certificate.public_key(),  # type: ignore[arg-type]
        key,  # type: ignore[arg-type]
        "XA MA 2027 (TEST)",
    )
    error = refusal(database, populated.xa_ma, pem_of(renewed))
    assert [f.code for f in error.findings] == ["EPIX-REG-015"]
    assert identity.fingerprint in error.findings[0].message
    with database.unit_of_work() as session:
        service.revoke_certificate(
            session, fingerprint=identity.fingerprint, reason="key compromise", actor=SECRETARIAT
        )
    signed = sign_document(PERMIT_XML, identity.key_pem, pem_of(renewed))
    with database.unit_of_work() as session:
        verdict = verify_document(
            signed, party="XA", role="management_authority", trust=RegistryTrustStore(session)
        )
    assert verdict.codes == ["EPIX-SIG-012"]


def test_a_revoked_key_in_a_new_certificate_is_refused(
    database: Database, populated: Populated
) -> None:
    """A key revoked as compromised must not come back under a fresh certificate: every
    document its thief signs would verify again."""
    identity = populated.xa_ma_identity
    with database.unit_of_work() as session:
        service.revoke_certificate(
            session, fingerprint=identity.fingerprint, reason="key compromise", actor=SECRETARIAT
        )
    key = serialization.load_pem_private_key(identity.key_pem, password=None)
    renewed = make_certificate(
        identity.certificate.public_key(),  # type: ignore[arg-type]
        key,  # type: ignore[arg-type]
        "XA MA re-issued (TEST)",
    )
    error = refusal(database, populated.xa_ma, pem_of(renewed))
    assert [f.code for f in error.findings] == ["EPIX-REG-015"]
    assert "revoked" in error.findings[0].message
    assert "key compromise" in error.findings[0].message


def test_cli_refuses_a_private_key_file_without_printing_it(
    sqlite_database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EPIX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EPIX_DATABASE_URL", sqlite_database.url)
    get_settings.cache_clear()
    try:
        with sqlite_database.unit_of_work() as session:
            service.add_party(session, code="XA", name="Exampleland", actor=SECRETARIAT)
            authority = service.add_authority(
                session, party="XA", kind="customs", name="XA Customs", actor=SECRETARIAT
            ).id
        identity = ec_identity("XA customs (TEST)")
        key_file = tmp_path / "customs.key.pem"
        key_file.write_bytes(identity.key_pem)
        result = CliRunner().invoke(
            cli, ["registry", "add-certificate", "--authority", str(authority), str(key_file)]
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1, result.output
    assert "EPIX-REG-014" in result.output
    secret = key_body(identity.key_pem)[:40].decode()
    assert secret not in result.output
    with sqlite_database.unit_of_work() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "registry.certificate.add")
        ).all()
        assert [event.outcome for event in events] == ["EPIX-REG-014"]
        assert secret not in events[0].detail
