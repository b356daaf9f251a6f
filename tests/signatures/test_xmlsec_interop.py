"""Interoperability with xmlsec1, the independent C implementation, in both directions."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from lxml import etree
from signxml.exceptions import InvalidDigest
from signxml.verifier import XMLVerifier

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


def xmlsec_sign(xmlsec1: str, template: bytes, identity: Identity, tmp_path: Path) -> bytes:
    """xmlsec1 fills in the template's digest, signature value and certificate."""
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
    return (tmp_path / "signed.xml").read_bytes()


def test_xmlsec1_signed_document_verifies_in_epix(
    kind: str, identity: Identity, tmp_path: Path
) -> None:
    xmlsec1 = need_command("xmlsec1")
    template = permit_document().replace(
        b"</rsm:CITESEPermit>",
        TEMPLATE.format(method=METHODS[kind]).encode() + b"</rsm:CITESEPermit>",
    )
    signed = xmlsec_sign(xmlsec1, template, identity, tmp_path)

    verdict = verify_document(
        signed, party=PARTY, role=ROLE, trust=StaticTrustStore([register(identity)])
    )

    assert verdict.valid, verdict.findings
    assert verdict.signature_algorithm == METHODS[kind]


# Where the enveloped-signature transform has to be exact: text after the signature stays in
# the signed content, a signature may be the root's only child, namespaces bound on the root
# but unused are dropped by exclusive C14N.
ENVELOPES = {
    "tail after the signature": (
        '<r:doc xmlns:r="urn:example:r" xmlns:unused="urn:example:u">\n  <r:qty>5</r:qty>\n'
        "  {signature}\n  \n</r:doc>"
    ),
    "signature as the only child": '<doc xmlns="urn:example:d">5{signature}</doc>',
    "whitespace-only root text": '<doc xmlns="urn:example:d">\n{signature}</doc>',
}


@pytest.mark.parametrize("envelope", sorted(ENVELOPES))
def test_epix_signs_off_exactly_the_bytes_signxml_digests(
    kind: str, identity: Identity, envelope: str, tmp_path: Path
) -> None:
    """The verifier's shortcut for the one EPIX-DSIG-1 reference (one copy of the tree, not
    signxml's two serialise-and-parse rounds) must digest and return what signxml does."""
    xmlsec1 = need_command("xmlsec1")
    template = ENVELOPES[envelope].format(signature=TEMPLATE.format(method=METHODS[kind]))
    signed = xmlsec_sign(xmlsec1, template.encode(), identity, tmp_path)
    trust = StaticTrustStore([register(identity)])

    verdict = verify_document(signed, party=PARTY, role=ROLE, trust=trust)
    bare = XMLVerifier().verify(signed, x509_cert=identity.cert_pem.decode())

    assert verdict.valid, verdict.findings
    assert not isinstance(bare, list) and bare.signed_xml is not None
    assert verdict.signed_bytes == bare.signed_data
    assert verdict.signed_element is not None
    assert etree.tostring(verdict.signed_element) == etree.tostring(bare.signed_xml)
    changed = signed.replace(b"</ds:Signature>", b"</ds:Signature> ", 1)
    assert not verify_document(changed, party=PARTY, role=ROLE, trust=trust).valid
    with pytest.raises(InvalidDigest):
        XMLVerifier().verify(changed, x509_cert=identity.cert_pem.decode())


# URI="" is the whole document without comments (XML-DSig 4.4.3.2): processing instructions
# before or after the root element are signed content, as xmlsec1 digests them.
STYLESHEET = b'<?xml-stylesheet type="text/xsl" href="https://evil.example/permit.xsl"?>\n'


def test_an_instruction_added_before_the_root_breaks_the_signature_as_in_xmlsec1(
    identity: Identity, tmp_path: Path
) -> None:
    """A stylesheet instruction slipped in front of a signed permit changes how it is shown
    (quantities, names) and would be stored and served with the permit's signed bytes."""
    xmlsec1 = need_command("xmlsec1")
    signed = sign_document(permit_document(), identity.key_pem, identity.cert_pem)
    declaration, rest = signed.split(b"?>\n", 1)
    injected = declaration + b"?>\n" + STYLESHEET + rest

    assert not xmlsec_verify(xmlsec1, injected, identity, tmp_path)
    verdict = verify_document(
        injected, party=PARTY, role=ROLE, trust=StaticTrustStore([register(identity)])
    )
    assert verdict.codes == ["EPIX-SIG-011"]


def test_xmlsec1_signed_document_with_a_stylesheet_instruction_verifies_in_epix(
    kind: str, identity: Identity, tmp_path: Path
) -> None:
    xmlsec1 = need_command("xmlsec1")
    declaration, permit = permit_document().split(b"?>\n", 1)
    template = (declaration + b"?>\n" + STYLESHEET + permit).replace(
        b"</rsm:CITESEPermit>",
        TEMPLATE.format(method=METHODS[kind]).encode() + b"</rsm:CITESEPermit>",
    )
    signed = xmlsec_sign(xmlsec1, template, identity, tmp_path)
    assert STYLESHEET.strip() in signed

    verdict = verify_document(
        signed, party=PARTY, role=ROLE, trust=StaticTrustStore([register(identity)])
    )

    assert verdict.valid, verdict.findings
    assert verdict.signed_bytes is not None and verdict.signed_bytes.startswith(STYLESHEET[:-1])
    moved = signed.replace(b"permit.xsl", b"permit2.xsl", 1)
    assert verify_document(
        moved, party=PARTY, role=ROLE, trust=StaticTrustStore([register(identity)])
    ).codes == ["EPIX-SIG-011"]
