"""Attacks from the XML-signature literature (wrapping, XXE, canonicalization, algorithm and
key substitution). Each is refused with its own code, and nothing else: a test that got a
different refusal would hide a missing check.
"""

from __future__ import annotations

import copy
import gc
import tracemalloc
from collections.abc import Sequence

import pytest
from cryptography import x509
from lxml import etree
from signxml.verifier import XMLVerifier

from epix.signatures import StaticTrustStore, Verdict, verify_document
from tests.pki import Identity, make_certificate, make_identity, make_key
from tests.signatures import forge
from tests.signatures.conftest import PARTY, ROLE, permit_document, register

DS = "http://www.w3.org/2000/09/xmldsig#"
SIGNATURE = f"{{{DS}}}Signature"


def check(document: bytes | etree._Element, trust: StaticTrustStore) -> Verdict:
    return verify_document(document, party=PARTY, role=ROLE, trust=trust)


def codes(document: bytes | etree._Element, trust: StaticTrustStore) -> Sequence[str]:
    verdict = check(document, trust)
    assert not verdict.valid
    assert verdict.signed_element is None and verdict.certificate is None
    return verdict.codes


def signxml_alone_accepts(document: bytes, certificate: x509.Certificate) -> bool:
    """Whether the bare library would verify it: shows the gap our check closes is real."""
    try:
        XMLVerifier().verify(document, x509_cert=certificate)
    except Exception:
        return False
    return True


def tree(document: bytes) -> etree._Element:
    return etree.fromstring(document)


def test_forged_reference_document_is_accepted(
    rsa_identity: Identity, trust: StaticTrustStore
) -> None:
    """The forging helper itself produces a valid EPIX-DSIG-1 signature."""
    key = forge.load_key(rsa_identity.key_pem)
    document = forge.forge(permit_document(), key, rsa_identity.certificate)

    assert check(document, trust).valid


def test_tampered_quantity_is_refused(signed_permit: bytes, trust: StaticTrustStore) -> None:
    tampered = signed_permit.replace(b'unitCode="NAR">5<', b'unitCode="NAR">50<', 1)

    assert codes(tampered, trust) == ["EPIX-SIG-011"]


def test_tampered_signature_value_is_refused(signed_permit: bytes, trust: StaticTrustStore) -> None:
    root = tree(signed_permit)
    value = root[-1][1]
    value.text = ("A" if value.text[0] != "A" else "B") + value.text[1:]  # type: ignore[index]

    assert codes(etree.tostring(root), trust) == ["EPIX-SIG-011"]


def test_no_signature_is_refused(trust: StaticTrustStore) -> None:
    assert codes(permit_document(), trust) == ["EPIX-SIG-001"]


def test_signature_moved_to_first_child_is_refused(
    signed_permit: bytes, trust: StaticTrustStore, rsa_identity: Identity
) -> None:
    root = tree(signed_permit)
    root.insert(0, root[-1])
    moved = etree.tostring(root)

    assert signxml_alone_accepts(moved, rsa_identity.certificate)
    assert codes(moved, trust) == ["EPIX-SIG-003"]


def test_signature_nested_deeper_is_refused(
    signed_permit: bytes, trust: StaticTrustStore, rsa_identity: Identity
) -> None:
    root = tree(signed_permit)
    root[1].append(root[-1])
    nested = etree.tostring(root)

    assert codes(nested, trust) == ["EPIX-SIG-003"]


def test_duplicated_signature_is_refused(signed_permit: bytes, trust: StaticTrustStore) -> None:
    root = tree(signed_permit)
    root.append(copy.deepcopy(root[-1]))

    assert codes(etree.tostring(root), trust) == ["EPIX-SIG-002"]


def test_signed_original_wrapped_in_object_is_refused(
    signed_permit: bytes, trust: StaticTrustStore
) -> None:
    original = tree(signed_permit)
    signature = original[-1]
    original.remove(signature)
    evil = tree(signed_permit.replace(b'unitCode="NAR">5<', b'unitCode="NAR">500<'))
    evil.remove(evil[-1])
    etree.SubElement(signature, f"{{{DS}}}Object").append(original)
    evil.append(signature)

    assert codes(etree.tostring(evil), trust) == ["EPIX-SIG-017"]


def test_signed_original_inside_a_wrapper_root_is_refused(
    signed_permit: bytes, trust: StaticTrustStore
) -> None:
    wrapper = etree.Element("{urn:evil}Wrapper")
    wrapper.append(tree(signed_permit))
    etree.SubElement(wrapper, "{urn:evil}Quantity").text = "500"

    assert codes(etree.tostring(wrapper), trust) == ["EPIX-SIG-003"]


def test_forged_root_hiding_the_signed_original_is_refused(
    signed_permit: bytes, trust: StaticTrustStore
) -> None:
    original = tree(signed_permit)
    evil = tree(signed_permit.replace(b'unitCode="NAR">5<', b'unitCode="NAR">500<'))
    signature = evil[-1]
    evil.remove(signature)
    hiding_place = etree.SubElement(evil, "{urn:evil}Extension")
    original.remove(original[-1])
    hiding_place.append(original)
    evil.append(signature)

    assert codes(etree.tostring(evil), trust) == ["EPIX-SIG-011"]


def test_extra_reference_is_refused(rsa_identity: Identity, trust: StaticTrustStore) -> None:
    key = forge.load_key(rsa_identity.key_pem)
    document = forge.forge(
        permit_document(root_id="p1"), key, rsa_identity.certificate, uris=("", "#p1")
    )

    assert codes(document, trust) == ["EPIX-SIG-004"]


def test_reference_by_id_is_refused(rsa_identity: Identity, trust: StaticTrustStore) -> None:
    key = forge.load_key(rsa_identity.key_pem)
    document = forge.forge(
        permit_document(root_id="p1"), key, rsa_identity.certificate, uris=("#p1",)
    )

    assert signxml_alone_accepts(document, rsa_identity.certificate)
    assert codes(document, trust) == ["EPIX-SIG-004"]


def test_comment_injected_into_signed_text_is_refused(
    signed_permit: bytes, trust: StaticTrustStore, rsa_identity: Identity
) -> None:
    # Canonical text is unchanged ("Python regius"), but a naive .text reader sees "Python ".
    injected = signed_permit.replace(b"Python regius", b"Python <!---->regius", 1)

    assert signxml_alone_accepts(injected, rsa_identity.certificate)
    assert codes(injected, trust) == ["EPIX-SIG-018"]


def test_sha1_digest_is_refused(rsa_identity: Identity, trust: StaticTrustStore) -> None:
    key = forge.load_key(rsa_identity.key_pem)
    document = forge.forge(permit_document(), key, rsa_identity.certificate, digest=forge.SHA1)

    assert codes(document, trust) == ["EPIX-SIG-007"]


def test_rsa_sha1_signature_method_is_refused(
    rsa_identity: Identity, trust: StaticTrustStore
) -> None:
    key = forge.load_key(rsa_identity.key_pem)
    document = forge.forge(permit_document(), key, rsa_identity.certificate, method=forge.RSA_SHA1)

    assert codes(document, trust) == ["EPIX-SIG-008"]


def test_hmac_keyed_with_the_public_certificate_is_refused(
    rsa_identity: Identity, trust: StaticTrustStore
) -> None:
    document = forge.forge(
        permit_document(),
        rsa_identity.cert_pem,
        rsa_identity.certificate,
        method=forge.HMAC_SHA256,
    )

    assert codes(document, trust) == ["EPIX-SIG-008"]


def test_ecdsa_method_with_an_rsa_certificate_is_refused(
    rsa_identity: Identity, trust: StaticTrustStore
) -> None:
    document = forge.forge(
        permit_document(), forge.load_key(rsa_identity.key_pem), rsa_identity.certificate
    )
    root = tree(document)
    method = root[-1][0][1]
    method.set("Algorithm", forge.ECDSA_SHA256)

    assert codes(etree.tostring(root), trust) == ["EPIX-SIG-008"]


def test_rsa_1024_key_is_refused_even_when_registered() -> None:
    weak = make_identity(kind="rsa", size=1024)
    document = forge.forge(permit_document(), forge.load_key(weak.key_pem), weak.certificate)

    assert codes(document, StaticTrustStore([register(weak)])) == ["EPIX-SIG-009"]


def test_curve_outside_p256_p384_is_refused() -> None:
    p521 = make_identity(kind="ec", size=521)
    document = forge.forge(permit_document(), forge.load_key(p521.key_pem), p521.certificate)

    assert codes(document, StaticTrustStore([register(p521)])) == ["EPIX-SIG-009"]


def test_key_value_only_key_info_is_refused(
    rsa_identity: Identity, trust: StaticTrustStore
) -> None:
    key = forge.load_key(rsa_identity.key_pem)
    document = forge.forge(permit_document(), key, None, key_value_only=True)

    assert codes(document, trust) == ["EPIX-SIG-010"]


def test_garbage_certificate_is_refused(signed_permit: bytes, trust: StaticTrustStore) -> None:
    root = tree(signed_permit)
    root[-1][2][0][0].text = "bm90IGEgY2VydGlmaWNhdGU="

    assert codes(etree.tostring(root), trust) == ["EPIX-SIG-010"]


def test_an_oversized_certificate_is_refused_and_not_kept_in_memory(
    trust: StaticTrustStore,
) -> None:
    """Certificates are cached by their bytes; a client sending megabyte certificates (an
    unregistered signer costs it nothing) must not make every process keep hundreds of them."""
    key = make_key("ec", 256)
    documents = [
        forge.forge(
            permit_document(),
            key,
            make_certificate(key.public_key(), key, f"bulky {i}", padding=1_000_000),
        )
        for i in range(4)
    ]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for document in documents:
            assert codes(document, trust) == ["EPIX-SIG-010"]
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 500_000, f"{kept} bytes kept after verifying"


def test_transforms_other_than_the_profile_are_refused(
    rsa_identity: Identity, trust: StaticTrustStore
) -> None:
    key = forge.load_key(rsa_identity.key_pem)
    for transforms in (
        (forge.EXC_C14N, forge.ENVELOPED),
        (forge.ENVELOPED,),
        (forge.ENVELOPED, forge.XPATH_TRANSFORM),
        (forge.ENVELOPED, forge.INCLUSIVE_C14N),
    ):
        document = forge.forge(
            permit_document(), key, rsa_identity.certificate, transforms=transforms
        )
        assert codes(document, trust) == ["EPIX-SIG-005"], transforms


def test_inclusive_canonicalization_of_signed_info_is_refused(
    rsa_identity: Identity, trust: StaticTrustStore
) -> None:
    key = forge.load_key(rsa_identity.key_pem)
    document = forge.forge(
        permit_document(), key, rsa_identity.certificate, c14n=forge.INCLUSIVE_C14N
    )

    assert codes(document, trust) == ["EPIX-SIG-006"]


def test_signature_without_ds_prefix_is_refused(
    rsa_identity: Identity, trust: StaticTrustStore
) -> None:
    key = forge.load_key(rsa_identity.key_pem)
    document = forge.forge(permit_document(), key, rsa_identity.certificate, prefix=None)

    assert codes(document, trust) == ["EPIX-SIG-017"]


def test_enveloping_signature_is_refused(signed_permit: bytes, trust: StaticTrustStore) -> None:
    signature = tree(signed_permit)[-1]

    assert codes(etree.tostring(signature), trust) == ["EPIX-SIG-017"]


@pytest.mark.parametrize(
    ("document", "code"),
    [
        (
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>',
            "EPIX-XML-002",
        ),
        (b'<!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><r>&b;</r>', "EPIX-XML-002"),
        (b"<r><unclosed></r>", "EPIX-XML-001"),
        (b"", "EPIX-XML-006"),
    ],
)
def test_hostile_or_broken_xml_is_refused_by_the_parser(
    document: bytes, code: str, trust: StaticTrustStore
) -> None:
    assert codes(document, trust) == [code]


def test_doctype_in_a_signed_document_is_refused(
    signed_permit: bytes, trust: StaticTrustStore
) -> None:
    body = signed_permit.split(b"?>", 1)[1]
    with_dtd = b'<!DOCTYPE rsm:CITESEPermit [<!ENTITY q "5">]>' + body

    assert codes(with_dtd, trust) == ["EPIX-XML-002"]


def test_element_from_a_parser_that_kept_the_doctype_is_refused(
    signed_permit: bytes, trust: StaticTrustStore
) -> None:
    body = signed_permit.split(b"?>", 1)[1]
    permissive = etree.XMLParser(resolve_entities=False)
    root = etree.fromstring(b"<!DOCTYPE rsm:CITESEPermit>" + body, permissive)

    assert codes(root, trust) == ["EPIX-XML-002"]


def test_unexpected_failure_in_the_trust_store_is_a_refusal(signed_permit: bytes) -> None:
    class BrokenStore(StaticTrustStore):
        def candidates(self, party: str, role: str) -> list:  # type: ignore[override]
            raise RuntimeError("database went away")

    assert codes(signed_permit, BrokenStore()) == ["EPIX-SIG-016"]
