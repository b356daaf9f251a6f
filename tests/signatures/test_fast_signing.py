"""The direct EPIX-DSIG-1 signer against three verifiers and against signxml's own output.

Every signature is checked by our ``verify_document``, by a bare signxml ``XMLVerifier`` and by
xmlsec1; a changed byte of content, or a content change with a recomputed digest (so that only
the SignatureValue stands in the way), must fail in all three.
"""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree
from signxml.algorithms import SignatureConstructionMethod
from signxml.exceptions import InvalidDigest, InvalidSignature
from signxml.signer import SignatureReference, XMLSigner
from signxml.verifier import XMLVerifier

from epix.errors import EpixError, Finding
from epix.exchange.node_identity import NodeIdentity
from epix.exchange.receipts import ReceiptFacts, receipt_xml, sign_receipt
from epix.signatures import StaticTrustStore, sign_document, verify_document
from epix.signatures.profile import DIGESTS, ECDSA_METHODS, EXC_C14N, RSA_METHODS
from epix.xml import parse_xml
from tests.conftest import need_command
from tests.pki import Identity, make_identity
from tests.signatures.conftest import PARTY, ROLE, permit_document, register
from tests.signatures.test_xmlsec_interop import xmlsec_verify

DSIG = "http://www.w3.org/2000/09/xmldsig#"

# Default and prefixed namespaces, attributes in several namespaces, an Id on the root,
# non-ASCII text and escapes: each changes what C14N has to do.
MIXED = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<doc xmlns="urn:example:default" xmlns:p="urn:example:p" xmlns:unused="urn:example:u" '
    'Id="doc-1" z="last" a="first" p:flag="true">\n'
    '  <p:item xml:lang="fr" note="a &lt; b &amp; &quot;c&quot;">'
    "Élan &lt;vital&gt; café ✓</p:item>\n"
    '  <plain xmlns="">tab\there</plain>\n'
    "  <p:qty>5</p:qty>\n"
    "</doc>\n"
).encode()
# The root already binds the XML-DSig namespace, once to another prefix and once as default.
DSIG_OTHER_PREFIX = f'<r:root xmlns:r="urn:example:r" xmlns:sig="{DSIG}"><r:qty>5</r:qty></r:root>'
DSIG_DEFAULT = f'<root xmlns="{DSIG}" xmlns:r="urn:example:r"><r:qty>5</r:qty></root>'

# name -> (unsigned document, (old, new) bytes that change one value of signed content)
DOCUMENTS: dict[str, tuple[bytes, tuple[bytes, bytes]]] = {
    "permit": (permit_document(lines=1), (b'"NAR">5<', b'"NAR">6<')),
    "mixed": (MIXED, (b"<p:qty>5<", b"<p:qty>6<")),
    "dsig-other-prefix": (DSIG_OTHER_PREFIX.encode(), (b"<r:qty>5<", b"<r:qty>6<")),
    "dsig-default": (DSIG_DEFAULT.encode(), (b"<r:qty>5<", b"<r:qty>6<")),
}
KEYS = {"rsa": ("rsa", 2048), "ec-p256": ("ec", 256), "ec-p384": ("ec", 384)}


@pytest.fixture(scope="module", params=sorted(KEYS))
def identity(request: pytest.FixtureRequest) -> Identity:
    kind, size = KEYS[request.param]
    return make_identity(kind=kind, size=size)


class _ReferenceSigner(XMLSigner):
    """What sign_document used to be: signxml's enveloped signer pinned to ``URI=""``."""

    def _unpack(self, data: Any, references: Any) -> Any:
        sig_root, doc_root, c14n_inputs, _ = super()._unpack(data, None)  # type: ignore[arg-type]
        return sig_root, doc_root, c14n_inputs, [SignatureReference(URI="")]


def signxml_sign(document: bytes, identity: Identity, digest: str) -> bytes:
    methods = ECDSA_METHODS if _is_ec(identity) else RSA_METHODS
    signer = _ReferenceSigner(
        method=SignatureConstructionMethod.enveloped,
        signature_algorithm=methods[digest],
        digest_algorithm=DIGESTS[digest],
        c14n_algorithm=EXC_C14N,
    )
    signed = signer.sign(parse_xml(document), key=identity.key_pem, cert=identity.cert_pem.decode())
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + etree.tostring(signed, encoding="UTF-8")


def _is_ec(identity: Identity) -> bool:
    return isinstance(identity.certificate.public_key(), ec.EllipticCurvePublicKey)


def signxml_accepts(document: bytes, identity: Identity) -> bool:
    try:
        XMLVerifier().verify(document, x509_cert=identity.cert_pem.decode())
    except (InvalidDigest, InvalidSignature):
        return False
    return True


def epix_accepts(document: bytes, identity: Identity) -> bool:
    trust = StaticTrustStore([register(identity)])
    return verify_document(document, party=PARTY, role=ROLE, trust=trust).valid


def with_digest_recomputed(signed: bytes, digest: str) -> bytes:
    """Set DigestValue to the digest of the content as it now is: only SignatureValue can fail."""
    root = parse_xml(signed)
    signature = root[-1]
    root.remove(signature)
    content = etree.tostring(root, method="c14n", exclusive=True, with_comments=False)
    root.append(signature)
    value = base64.b64encode(hashlib.new(digest, content).digest()).decode()
    signature.find(f"{{{DSIG}}}SignedInfo/{{{DSIG}}}Reference/{{{DSIG}}}DigestValue").text = value  # type: ignore[union-attr]
    return etree.tostring(root, encoding="UTF-8", xml_declaration=True)


@pytest.mark.xmlsec1
@pytest.mark.parametrize("digest", sorted(DIGESTS))
@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_signature_verifies_in_all_three_verifiers_and_tampering_fails_in_all(
    identity: Identity, name: str, digest: str, tmp_path: Path
) -> None:
    xmlsec1 = need_command("xmlsec1")
    document, (before, after) = DOCUMENTS[name]
    signed = sign_document(document, identity.key_pem, identity.cert_pem, digest=digest)
    assert signed.count(before) == 1
    tampered = signed.replace(before, after)
    forged = with_digest_recomputed(tampered, digest)

    assert epix_accepts(signed, identity)
    assert signxml_accepts(signed, identity)
    assert xmlsec_verify(xmlsec1, signed, identity, tmp_path)
    for changed in (tampered, forged):
        assert not epix_accepts(changed, identity)
        assert not signxml_accepts(changed, identity)
        assert not xmlsec_verify(xmlsec1, changed, identity, tmp_path)


@pytest.mark.parametrize("digest", sorted(DIGESTS))
@pytest.mark.parametrize("name", ["permit", "mixed"])
def test_output_is_what_signxml_produced(identity: Identity, name: str, digest: str) -> None:
    """Byte for byte; ECDSA signatures are randomised, so there SignatureValue is set aside."""
    document = DOCUMENTS[name][0]
    ours = sign_document(document, identity.key_pem, identity.cert_pem, digest=digest)
    theirs = signxml_sign(document, identity, digest)

    if _is_ec(identity):
        value = re.compile(rb"<ds:SignatureValue>[^<]+</ds:SignatureValue>")
        assert value.sub(b"", ours) == value.sub(b"", theirs)
        key = identity.certificate.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        width = 2 * key.curve.key_size // 8
        assert len(base64.b64decode(parse_xml(ours)[-1][1].text or "")) == width
    else:
        assert ours == theirs


@pytest.mark.xmlsec1
def test_ecdsa_r_and_s_keep_their_full_width_when_they_start_with_zero(
    ec_identity: Identity, tmp_path: Path
) -> None:
    """About one P-256 signature in 128 has r or s below 2**248; XML-DSig still wants 32 bytes
    each, or verifiers split r || s in the wrong place."""
    xmlsec1 = need_command("xmlsec1")
    document = DOCUMENTS["permit"][0]
    for _ in range(3000):
        signed = sign_document(document, ec_identity.key_pem, ec_identity.cert_pem)
        value = base64.b64decode(parse_xml(signed)[-1][1].text or "")
        if len(value) != 64 or value[0] == 0 or value[32] == 0:
            break
    else:
        pytest.fail("no signature with a short r or s in 3000 tries")

    assert len(value) == 64
    assert epix_accepts(signed, ec_identity)
    assert signxml_accepts(signed, ec_identity)
    assert xmlsec_verify(xmlsec1, signed, ec_identity, tmp_path)


@pytest.mark.parametrize("name", ["dsig-other-prefix", "dsig-default"])
def test_signature_keeps_the_ds_prefix_when_the_root_binds_dsig_otherwise(
    ec_identity: Identity, name: str
) -> None:
    signed = parse_xml(sign_document(DOCUMENTS[name][0], ec_identity.key_pem, ec_identity.cert_pem))

    assert {element.prefix for element in signed[-1].iter()} == {"ds"}


def test_a_refused_identity_stays_refused_after_its_key_signed(
    rsa_identity: Identity, ec_identity: Identity
) -> None:
    sign_document(permit_document(lines=1), rsa_identity.key_pem, rsa_identity.cert_pem)
    for _ in range(2):
        with pytest.raises(ValueError, match="does not belong"):
            sign_document(permit_document(lines=1), rsa_identity.key_pem, ec_identity.cert_pem)


def test_signed_receipt_verifies_as_the_node(ec_identity: Identity) -> None:
    facts = ReceiptFacts(
        sha256="ab" * 32,
        received_at=datetime(2026, 11, 1, 9, 0, tzinfo=UTC),
        status="rejected",
        node_party=PARTY,
        message_id="m-1",
        sender=PARTY,
        recipient="XB",
        findings=[Finding("EPIX-RULE-001", 'Quantité < 0 & "x"', location="/a", line=3)],
    )
    node = NodeIdentity(PARTY, ec_identity.key_pem, ec_identity.cert_pem)
    signed = sign_receipt(facts, node)
    trust = StaticTrustStore([node.trusted()])

    verdict = verify_document(signed, party=PARTY, role="node", trust=trust)

    assert verdict.valid, verdict.findings
    assert verdict.signed_element is not None
    assert verdict.signed_bytes == etree.tostring(
        parse_xml(receipt_xml(facts)), method="c14n", exclusive=True
    )
    assert not verify_document(
        signed.replace(b">rejected<", b">accepted<"), party=PARTY, role="node", trust=trust
    ).valid


def test_a_document_libxml2_cannot_canonicalize_is_refused_with_a_code(
    ec_identity: Identity,
) -> None:
    document = b'<?xml version="1.0"?>\n<root xmlns:zz="relative"><a>1</a></root>'
    with pytest.raises(EpixError) as refused:
        sign_document(document, ec_identity.key_pem, ec_identity.cert_pem)
    assert [finding.code for finding in refused.value.findings] == ["EPIX-XML-001"]
    assert "relative namespace" in refused.value.findings[0].message
