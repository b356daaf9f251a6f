"""Signing under EPIX-DSIG-1: one enveloped ``ds:Signature``, last child of the root.

The profile fixes every choice (one Reference with ``URI=""``, enveloped-signature then
exclusive C14N, the digest and signature method, one ``X509Data`` certificate), so the signature
is built directly with lxml and cryptography: exclusive C14N of the document, its digest, the
SignedInfo canonicalized where it sits in the tree, and the key's signature over it. The output
is what signxml's enveloped signer produced for the same input (tests compare them), without
its per-call overhead; every node receipt is signed this way.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from functools import lru_cache

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from lxml import etree

from epix.errors import EpixError
from epix.signatures.keys import SigningKey, check_identity, load_signing_key
from epix.signatures.profile import DIGESTS, ECDSA_METHODS, ENVELOPED, EXC_C14N, RSA_METHODS, ds
from epix.xml import parse_xml
from epix.xml.namespaces import DSIG
from epix.xml.parse import DEFAULT_MAX_BYTES

_XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
_DS_NSMAP = {"ds": DSIG}
_SIGNATURE = ds("Signature")
# The children of ds:Signature as signxml built them; the values are base64 or fixed URIs, so
# nothing needs escaping. SignatureValue is filled in once SignedInfo is signed.
_SIGNATURE_TEMPLATE = (
    f'<ds:Signature xmlns:ds="{DSIG}"><ds:SignedInfo>'
    f'<ds:CanonicalizationMethod Algorithm="{EXC_C14N}"/>'
    '<ds:SignatureMethod Algorithm="{method}"/>'
    '<ds:Reference URI=""><ds:Transforms>'
    f'<ds:Transform Algorithm="{ENVELOPED}"/><ds:Transform Algorithm="{EXC_C14N}"/>'
    "</ds:Transforms>"
    '<ds:DigestMethod Algorithm="{digest}"/><ds:DigestValue>{digest_value}</ds:DigestValue>'
    "</ds:Reference></ds:SignedInfo><ds:SignatureValue/>"
    "<ds:KeyInfo><ds:X509Data><ds:X509Certificate>{certificate}</ds:X509Certificate>"
    "</ds:X509Data></ds:KeyInfo></ds:Signature>"
)
_TEMPLATE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)


@dataclass(frozen=True, slots=True)
class _Signer:
    """A checked identity: the key, its method table and the certificate as KeyInfo holds it."""

    key: SigningKey
    methods: dict[str, str]
    certificate_text: str


@lru_cache(maxsize=16)
def _signer(key_pem: bytes, cert_pem: bytes) -> _Signer:
    """Check and load an identity once: a node signs every receipt with the same one.

    Failures raise and are not cached, so a bad identity is refused on every call.
    """
    certificate = check_identity(key_pem, cert_pem)
    key = load_signing_key(key_pem)
    table = RSA_METHODS if isinstance(key, rsa.RSAPrivateKey) else ECDSA_METHODS
    body = base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode("ascii")
    # The PEM body (64-column lines, trailing newline), as signxml copied it into X509Certificate.
    lines = "".join(body[i : i + 64] + "\n" for i in range(0, len(body), 64))
    return _Signer(key, {name: method.value for name, method in table.items()}, lines)


def _signature_value(key: SigningKey, data: bytes, digest: str) -> bytes:
    """RSA PKCS#1 v1.5, or ECDSA as XML-DSig wants it: raw r || s, each of the curve's width."""
    algorithm = _HASHES[digest]()
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), algorithm)
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(algorithm)))
    width = (key.curve.key_size + 7) // 8
    return r.to_bytes(width, "big") + s.to_bytes(width, "big")


def _signature_element(
    root: etree._Element, signer: _Signer, digest: str, digest_value: str
) -> etree._Element:
    """Append the ds:Signature signxml built, element for element, SignatureValue still empty.

    ds:Signature is created in place with its own ``ds`` declaration and the rest moved under
    it: an appended ds:Signature would take the root's prefix when the root binds XML-DSig to
    another one (lxml drops a declaration its new parent already makes).
    """
    signature = etree.SubElement(root, _SIGNATURE, nsmap=_DS_NSMAP)
    template = _SIGNATURE_TEMPLATE.format(
        method=signer.methods[digest],
        digest=DIGESTS[digest].value,
        digest_value=digest_value,
        certificate=signer.certificate_text,
    )
    signature.extend(etree.fromstring(template, parser=_TEMPLATE_PARSER))
    return signature


def sign_document(
    xml: bytes,
    key_pem: bytes,
    cert_pem: bytes,
    *,
    digest: str = "sha256",
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> bytes:
    """Sign ``xml`` with the key and its leaf certificate; returns the signed document's bytes.

    ``max_bytes`` is the largest ``xml`` taken: a permit's limit unless the caller's documents
    have their own (the registry's is ``epix.registry.document.MAX_DOCUMENT_BYTES``).

    Raises ``EpixError`` for unparseable or already signed input, and ``ValueError`` when the key
    is weak, of another kind, or does not belong to the certificate (caller's configuration).
    """
    if digest not in DIGESTS:
        raise ValueError(f"Unknown digest {digest!r}; use one of {', '.join(DIGESTS)}.")
    signer = _signer(key_pem, cert_pem)
    root = parse_xml(xml, max_bytes=max_bytes)
    if root.tag == _SIGNATURE or next(root.iter(_SIGNATURE), None) is not None:
        raise EpixError.of(
            "EPIX-SIG-002",
            "The document is already signed; EPIX-DSIG-1 allows exactly one signature.",
            location="/",
        )
    comment = next(root.iter(etree.Comment), None)
    if comment is not None:
        # Comments are not signed (exclusive C14N drops them); verification would refuse them.
        raise EpixError.of(
            "EPIX-SIG-018",
            "Remove the XML comments before signing: they would not be covered by the signature.",
            location="/",
            line=comment.sourceline if isinstance(comment.sourceline, int) else None,
        )
    # Enveloped-signature then exclusive C14N of URI="": the root before the signature exists.
    try:
        content = etree.tostring(root, method="c14n", exclusive=True, with_comments=False)
    except etree.C14NError:
        # libxml2 refuses to canonicalize e.g. a relative namespace URI (xmlns:x="relative").
        raise EpixError.of(
            "EPIX-XML-001",
            "The document cannot be canonicalized (a relative namespace URI such as "
            'xmlns="u"?), so it cannot be signed; use absolute namespace URIs.',
            location="/",
        ) from None
    digest_value = base64.b64encode(hashlib.new(digest, content).digest()).decode("ascii")
    signature = _signature_element(root, signer, digest, digest_value)
    # SignedInfo is canonicalized where it stands, in the document's namespace context.
    signed_info = etree.tostring(signature[0], method="c14n", exclusive=True, with_comments=False)
    value = _signature_value(signer.key, signed_info, digest)
    signature[1].text = base64.b64encode(value).decode("ascii")
    return _XML_DECLARATION + etree.tostring(root, encoding="UTF-8", xml_declaration=False)
