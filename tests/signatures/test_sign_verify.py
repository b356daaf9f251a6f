"""Round trips under EPIX-DSIG-1 for every allowed key type, and what the verdict reports."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from lxml import etree

from epix.errors import EpixError
from epix.signatures import StaticTrustStore, sign_document, verify_document
from epix.xml import parse_xml
from tests.pki import Identity, make_identity
from tests.signatures.conftest import CITES, PARTY, RAM, ROLE, permit_document, register

DS = "http://www.w3.org/2000/09/xmldsig#"
NS = {"ds": DS, "rsm": CITES, "ram": RAM}


@pytest.mark.parametrize(
    ("kind", "size", "key"),
    [
        ("rsa", 2048, "RSA-2048"),
        ("rsa", 3072, "RSA-3072"),
        ("ec", 256, "ECDSA P-256"),
        ("ec", 384, "ECDSA P-384"),
    ],
)
def test_document_signed_with_allowed_key_verifies(kind: str, size: int, key: str) -> None:
    identity = make_identity(kind=kind, size=size)
    signed = sign_document(permit_document(), identity.key_pem, identity.cert_pem)

    verdict = verify_document(
        signed, party=PARTY, role=ROLE, trust=StaticTrustStore([register(identity)])
    )

    assert verdict.valid, verdict.findings
    assert verdict.findings == ()
    assert verdict.key_description == key
    assert verdict.certificate is not None
    assert verdict.certificate.fingerprint == identity.fingerprint
    assert verdict.document_fingerprint == identity.fingerprint
    family = "rsa" if kind == "rsa" else "ecdsa"
    assert verdict.signature_algorithm == f"http://www.w3.org/2001/04/xmldsig-more#{family}-sha256"
    assert verdict.digest_algorithm == "http://www.w3.org/2001/04/xmlenc#sha256"


def test_signature_follows_the_profile_layout(rsa_identity: Identity) -> None:
    signed = parse_xml(
        sign_document(permit_document(root_id="p1"), rsa_identity.key_pem, rsa_identity.cert_pem)
    )

    signature = signed[-1]
    assert signature.tag == f"{{{DS}}}Signature" and signature.prefix == "ds"
    assert signed.xpath("count(//ds:Signature)", namespaces=NS) == 1
    # The root's Id attribute must not turn the reference into "#p1".
    assert signature.xpath("ds:SignedInfo/ds:Reference/@URI", namespaces=NS) == [""]
    assert signature.xpath(
        "ds:SignedInfo/ds:Reference/ds:Transforms/ds:Transform/@Algorithm", namespaces=NS
    ) == [
        "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
        "http://www.w3.org/2001/10/xml-exc-c14n#",
    ]
    assert signature.xpath("ds:SignedInfo/ds:CanonicalizationMethod/@Algorithm", namespaces=NS) == [
        "http://www.w3.org/2001/10/xml-exc-c14n#"
    ]
    assert len(signature.xpath("ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=NS)) == 1


@pytest.mark.parametrize("digest", ["sha384", "sha512"])
def test_longer_digests_verify(ec_identity: Identity, trust: StaticTrustStore, digest: str) -> None:
    signed = sign_document(
        permit_document(), ec_identity.key_pem, ec_identity.cert_pem, digest=digest
    )

    verdict = verify_document(signed, party=PARTY, role=ROLE, trust=trust)

    assert verdict.valid, verdict.findings
    assert verdict.digest_algorithm is not None and verdict.digest_algorithm.endswith(digest)


def test_signed_element_is_the_signed_content_without_signature(
    signed_permit: bytes, trust: StaticTrustStore
) -> None:
    verdict = verify_document(signed_permit, party=PARTY, role=ROLE, trust=trust)

    assert verdict.signed_element is not None and verdict.signed_bytes is not None
    assert verdict.signed_element.tag == f"{{{CITES}}}CITESEPermit"
    assert verdict.signed_element.find(f".//{{{DS}}}Signature") is None
    quantities = verdict.signed_element.xpath("//ram:ItemQuantity/text()", namespaces=NS)
    assert quantities == ["5"] * 12
    assert verdict.signed_bytes == etree.tostring(
        verdict.signed_element, method="c14n", exclusive=True
    )


def test_role_may_be_spelled_with_a_hyphen(signed_permit: bytes, trust: StaticTrustStore) -> None:
    verdict = verify_document(signed_permit, party="xa", role="management-authority", trust=trust)

    assert verdict.valid, verdict.findings


def test_parsed_element_verifies_and_is_left_untouched(
    signed_permit: bytes, trust: StaticTrustStore
) -> None:
    root = parse_xml(signed_permit)
    before = etree.tostring(root)

    verdict = verify_document(root, party=PARTY, role=ROLE, trust=trust)

    assert verdict.valid, verdict.findings
    assert etree.tostring(root) == before


def test_document_carried_inside_an_envelope_verifies(
    signed_permit: bytes, trust: StaticTrustStore
) -> None:
    permit = signed_permit.split(b"?>", 1)[1]
    envelope = parse_xml(
        b'<env:Envelope xmlns:env="urn:epix:envelope:1" xmlns:x="urn:unused"><env:Payload>'
        + permit
        + b"</env:Payload></env:Envelope>"
    )

    verdict = verify_document(envelope[0][0], party=PARTY, role=ROLE, trust=trust)

    assert verdict.valid, verdict.findings


def test_verdict_records_the_signing_time(signed_permit: bytes, trust: StaticTrustStore) -> None:
    when = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    naive = datetime(2026, 12, 1, 12, 0)

    assert (
        verify_document(signed_permit, party=PARTY, role=ROLE, trust=trust, at=when).signing_time
        == when
    )
    assert (
        verify_document(signed_permit, party=PARTY, role=ROLE, trust=trust, at=naive).signing_time
        == when
    )


def test_verdict_summary_names_signer_and_errors(
    signed_permit: bytes, trust: StaticTrustStore, rsa_identity: Identity
) -> None:
    good = verify_document(signed_permit, party=PARTY, role=ROLE, trust=trust).as_dict()
    bad = verify_document(signed_permit, party="XB", role=ROLE, trust=trust)

    assert good["valid"] is True and good["errors"] == []
    assert isinstance(good["signer"], dict) and good["signer"]["party"] == PARTY
    assert good["signer"]["fingerprint"] == rsa_identity.fingerprint
    assert bad.as_dict()["valid"] is False
    with pytest.raises(EpixError) as raised:
        bad.raise_if_invalid()
    assert [f.code for f in raised.value.findings] == ["EPIX-SIG-015"]


def test_signing_refuses_an_already_signed_document(
    signed_permit: bytes, rsa_identity: Identity
) -> None:
    with pytest.raises(EpixError) as raised:
        sign_document(signed_permit, rsa_identity.key_pem, rsa_identity.cert_pem)

    assert raised.value.findings[0].code == "EPIX-SIG-002"


def test_signing_refuses_comments_it_could_not_cover(rsa_identity: Identity) -> None:
    document = permit_document().replace(b"<ram:TypeCode>E", b"<!-- note --><ram:TypeCode>E")

    with pytest.raises(EpixError) as raised:
        sign_document(document, rsa_identity.key_pem, rsa_identity.cert_pem)

    assert raised.value.findings[0].code == "EPIX-SIG-018"


def test_signing_refuses_weak_or_mismatched_keys(
    rsa_identity: Identity, ec_identity: Identity
) -> None:
    weak = make_identity(kind="rsa", size=1024)
    with pytest.raises(ValueError, match="2048"):
        sign_document(permit_document(), weak.key_pem, weak.cert_pem)
    with pytest.raises(ValueError, match="does not belong"):
        sign_document(permit_document(), rsa_identity.key_pem, ec_identity.cert_pem)
    with pytest.raises(ValueError, match="digest"):
        sign_document(permit_document(), rsa_identity.key_pem, rsa_identity.cert_pem, digest="sha1")
