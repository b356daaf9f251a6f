"""Interoperability with xmlsec1, the independent C implementation, in both directions."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from epix.signatures import StaticTrustStore, sign_document, verify_document
from tests.conftest import need_command
from tests.pki import Identity, make_identity
from tests.signatures.conftest import PARTY, ROLE, permit_document, register

pytestmark = pytest.mark.xmlsec1

METHODS = {
    "rsa": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "ec": "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
}

TEMPLATE = (
    '<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>'
    '<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>'
    '<ds:SignatureMethod Algorithm="{method}"/>'
    '<ds:Reference URI=""><ds:Transforms>'
    '<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>'
    '<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms>'
    '<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue/>'
    "</ds:Reference></ds:SignedInfo><ds:SignatureValue/>"
    "<ds:KeyInfo><ds:X509Data><ds:X509Certificate/></ds:X509Data></ds:KeyInfo></ds:Signature>"
)


@pytest.fixture(params=["rsa", "ec"], ids=["rsa", "ecdsa"])
def kind(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
def identity(kind: str) -> Identity:
    return make_identity(kind=kind, size=2048 if kind == "rsa" else 256)


def xmlsec_verify(xmlsec1: str, document: bytes, identity: Identity, tmp_path: Path) -> bool:
    (tmp_path / "signed.xml").write_bytes(document)
    (tmp_path / "cert.pem").write_bytes(identity.cert_pem)
    result = subprocess.run(
        [
            xmlsec1,
            "--verify",
            "--enabled-reference-uris",
            "empty",
            "--pubkey-cert-pem",
            str(tmp_path / "cert.pem"),
            str(tmp_path / "signed.xml"),
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return result.returncode == 0


def test_epix_signed_document_verifies_in_xmlsec1(identity: Identity, tmp_path: Path) -> None:
    xmlsec1 = need_command("xmlsec1")
    signed = sign_document(permit_document(), identity.key_pem, identity.cert_pem)

    assert xmlsec_verify(xmlsec1, signed, identity, tmp_path)
    tampered = signed.replace(b'unitCode="NAR">5<', b'unitCode="NAR">6<', 1)
    assert not xmlsec_verify(xmlsec1, tampered, identity, tmp_path)


def test_xmlsec1_signed_document_verifies_in_epix(
    kind: str, identity: Identity, tmp_path: Path
) -> None:
    xmlsec1 = need_command("xmlsec1")
    template = permit_document().replace(
        b"</rsm:CITESEPermit>",
        TEMPLATE.format(method=METHODS[kind]).encode() + b"</rsm:CITESEPermit>",
    )
    (tmp_path / "template.xml").write_bytes(template)
    (tmp_path / "key.pem").write_bytes(identity.key_pem)
    (tmp_path / "cert.pem").write_bytes(identity.cert_pem)
    subprocess.run(
        [
            xmlsec1,
            "--sign",
            "--privkey-pem",
            f"{tmp_path / 'key.pem'},{tmp_path / 'cert.pem'}",
            "--output",
            str(tmp_path / "signed.xml"),
            str(tmp_path / "template.xml"),
        ],
        capture_output=True,
        timeout=30,
        check=True,
    )
    signed = (tmp_path / "signed.xml").read_bytes()

    verdict = verify_document(
        signed, party=PARTY, role=ROLE, trust=StaticTrustStore([register(identity)])
    )

    assert verdict.valid, verdict.findings
    assert verdict.signature_algorithm == METHODS[kind]
