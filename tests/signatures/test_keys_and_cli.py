"""Signing identities on disk and the ``epix keys`` / ``epix sign`` / ``epix bench verify`` CLI."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.x509.oid import NameOID

from epix.cli.main import cli
from epix.signatures import (
    StaticTrustStore,
    TrustedCertificate,
    ensure_identity,
    generate_identity,
    load_identity,
    sign_document,
    verify_document,
    write_identity,
)
from tests.signatures.conftest import ROLE, permit_document


def trust_for(cert_pem: bytes, party: str = "XA") -> StaticTrustStore:
    return StaticTrustStore([TrustedCertificate.from_certificate(cert_pem, party=party, role=ROLE)])


@pytest.mark.parametrize(("kind", "key"), [("ec", "ECDSA P-256"), ("rsa", "RSA-3072")])
def test_generated_identity_names_its_party_and_signs(kind: str, key: str) -> None:
    key_pem, cert_pem = generate_identity("XA", "management-authority", "XA MA", kind=kind)
    certificate = x509.load_pem_x509_certificate(cert_pem)
    subject = certificate.subject

    assert subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "XA"
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == ROLE
    verdict = verify_document(
        sign_document(permit_document(), key_pem, cert_pem),
        party="XA",
        role=ROLE,
        trust=trust_for(cert_pem),
    )
    assert verdict.valid, verdict.findings
    assert verdict.key_description == key


def test_secretariat_identity_has_no_country() -> None:
    _, cert_pem = generate_identity("CITES", "secretariat", "CITES Secretariat")
    subject = x509.load_pem_x509_certificate(cert_pem).subject

    assert subject.get_attributes_for_oid(NameOID.COUNTRY_NAME) == []
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "CITES Secretariat"


def test_written_key_is_private_and_never_overwritten(tmp_path: Path) -> None:
    key_pem, cert_pem = generate_identity("XA", ROLE, "XA MA")
    key_path, cert_path = write_identity(tmp_path / "keys", "xa-ma", key_pem, cert_pem)
    assert cert_path.read_bytes() == cert_pem

    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert load_identity(tmp_path / "keys", "xa-ma") == (key_pem, cert_pem)
    with pytest.raises(FileExistsError):
        write_identity(tmp_path / "keys", "xa-ma", *generate_identity("XA", ROLE, "other"))
    assert key_path.read_bytes() == key_pem


def test_load_identity_refuses_a_key_of_another_certificate(tmp_path: Path) -> None:
    key_pem, _ = generate_identity("XA", ROLE, "one")
    _, other_cert = generate_identity("XA", ROLE, "two")
    write_identity(tmp_path, "mixed", key_pem, other_cert)

    with pytest.raises(ValueError, match="does not belong"):
        load_identity(tmp_path, "mixed")


def test_ensure_identity_generates_once_then_reuses(tmp_path: Path) -> None:
    first = ensure_identity(tmp_path, "node", party="XA", role="node", common_name="XA node")
    second = ensure_identity(tmp_path, "node", party="XA", role="node", common_name="XA node")

    assert first == second


def test_cli_generates_keys_and_signs_a_file(tmp_path: Path) -> None:
    runner = CliRunner()
    generated = runner.invoke(
        cli,
        [
            "keys",
            "generate",
            "--party",
            "xa",
            "--role",
            "management-authority",
            "--out",
            str(tmp_path / "keys"),
        ],
    )
    assert generated.exit_code == 0, generated.output
    key_path = tmp_path / "keys" / "xa-management-authority.key.pem"
    cert_path = tmp_path / "keys" / "xa-management-authority.cert.pem"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    (tmp_path / "permit.xml").write_bytes(permit_document())

    signed = runner.invoke(
        cli,
        [
            "sign",
            "--key",
            str(key_path),
            "--cert",
            str(cert_path),
            str(tmp_path / "permit.xml"),
            str(tmp_path / "signed.xml"),
        ],
    )

    assert signed.exit_code == 0, signed.output
    verdict = verify_document(
        (tmp_path / "signed.xml").read_bytes(),
        party="XA",
        role=ROLE,
        trust=trust_for(cert_path.read_bytes()),
    )
    assert verdict.valid, verdict.findings


def test_cli_refuses_to_overwrite_a_key(tmp_path: Path) -> None:
    arguments = ["keys", "generate", "--party", "XA", "--role", "customs", "--out", str(tmp_path)]
    runner = CliRunner()
    assert runner.invoke(cli, arguments).exit_code == 0
    key_before = (tmp_path / "xa-customs.key.pem").read_bytes()

    again = runner.invoke(cli, arguments)

    assert again.exit_code == 1
    assert "refusing to overwrite" in again.output
    assert (tmp_path / "xa-customs.key.pem").read_bytes() == key_before


def test_cli_rejects_a_party_that_is_not_an_iso_code(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["keys", "generate", "--party", "XYZ1", "--role", "customs", "--out", str(tmp_path)]
    )

    assert result.exit_code == 2
    assert "ISO 3166" in result.output


@pytest.mark.parametrize("days", ["3000000", "99999999999999999999"])
def test_cli_refuses_a_validity_past_the_year_9999(tmp_path: Path, days: str) -> None:
    """The end date overflowed: a traceback (OverflowError) instead of a message."""
    arguments = ["keys", "generate", "--party", "XA", "--role", "customs", "--days", days]
    result = CliRunner().invoke(cli, [*arguments, "--out", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "9999" in result.output
    assert not list(tmp_path.iterdir())


def test_cli_sign_reports_bad_input_with_a_code(tmp_path: Path) -> None:
    key_pem, cert_pem = generate_identity("XA", ROLE, "XA MA")
    (tmp_path / "k.pem").write_bytes(key_pem)
    (tmp_path / "c.pem").write_bytes(cert_pem)
    (tmp_path / "bad.xml").write_bytes(b"<!DOCTYPE x><x/>")
    runner = CliRunner()

    bad_xml = runner.invoke(
        cli,
        [
            "sign",
            "--key",
            str(tmp_path / "k.pem"),
            "--cert",
            str(tmp_path / "c.pem"),
            str(tmp_path / "bad.xml"),
            str(tmp_path / "out.xml"),
        ],
    )
    bad_key = runner.invoke(
        cli,
        [
            "sign",
            "--key",
            str(tmp_path / "c.pem"),
            "--cert",
            str(tmp_path / "c.pem"),
            str(tmp_path / "bad.xml"),
            str(tmp_path / "out.xml"),
        ],
    )

    assert bad_xml.exit_code == 1 and "EPIX-XML-002" in bad_xml.output
    assert bad_key.exit_code == 1 and "Error:" in bad_key.output
    assert not (tmp_path / "out.xml").exists()


def test_bench_verify_prints_rates_and_ratio() -> None:
    result = CliRunner().invoke(cli, ["bench", "verify", "--seconds", "0.3", "--lines", "2"])

    assert result.exit_code == 0, result.output
    assert "verifications/s" in result.output
    assert "ratio:" in result.output
