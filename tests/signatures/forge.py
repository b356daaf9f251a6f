"""A tiny hand-rolled XML-DSig signer for attack tests: it signs *correctly* with whatever
parameters an attacker picks (SHA-1, HMAC, extra references, KeyValue only, weak keys), so a
refusal proves the profile check fired, not that the cryptography happened to fail.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from lxml import etree

DSIG = "http://www.w3.org/2000/09/xmldsig#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
INCLUSIVE_C14N = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
XPATH_TRANSFORM = "http://www.w3.org/TR/1999/REC-xpath-19991116"
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
HMAC_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256"

_HASHES = {SHA1: "sha1", SHA256: "sha256"}


def _ds(name: str) -> str:
    return f"{{{DSIG}}}{name}"


def _c14n(element: etree._Element, algorithm: str = EXC_C14N) -> bytes:
    exclusive = algorithm == EXC_C14N
    return etree.tostring(element, method="c14n", exclusive=exclusive, with_comments=False)


def forge(
    document: bytes,
    key: object,
    certificate: x509.Certificate | None,
    *,
    method: str | None = None,
    digest: str = SHA256,
    transforms: Sequence[str] = (ENVELOPED, EXC_C14N),
    c14n: str = EXC_C14N,
    uris: Sequence[str] = ("",),
    key_value_only: bool = False,
    prefix: str | None = "ds",
) -> bytes:
    """Sign ``document`` enveloped, the Signature appended as the root's last child."""
    root = etree.fromstring(document)
    if method is None:
        method = RSA_SHA256 if isinstance(key, rsa.RSAPrivateKey) else ECDSA_SHA256
    nsmap = {prefix: DSIG}
    signature = etree.Element(_ds("Signature"), nsmap=nsmap)
    signed_info = etree.SubElement(signature, _ds("SignedInfo"))
    etree.SubElement(signed_info, _ds("CanonicalizationMethod"), Algorithm=c14n)
    etree.SubElement(signed_info, _ds("SignatureMethod"), Algorithm=method)
    for uri in uris:
        target = root if uri == "" else root.xpath("//*[@Id=$id]", id=uri[1:])[0]
        reference = etree.SubElement(signed_info, _ds("Reference"), URI=uri)
        transforms_element = etree.SubElement(reference, _ds("Transforms"))
        for algorithm in transforms:
            etree.SubElement(transforms_element, _ds("Transform"), Algorithm=algorithm)
        etree.SubElement(reference, _ds("DigestMethod"), Algorithm=digest)
        value = hashlib.new(_HASHES[digest], _c14n(target)).digest()
        etree.SubElement(reference, _ds("DigestValue")).text = base64.b64encode(value).decode()
    signature_value = etree.SubElement(signature, _ds("SignatureValue"))
    key_info = etree.SubElement(signature, _ds("KeyInfo"))
    if key_value_only:
        assert isinstance(key, rsa.RSAPrivateKey)
        numbers = key.public_key().public_numbers()
        rsa_value = etree.SubElement(
            etree.SubElement(key_info, _ds("KeyValue")), _ds("RSAKeyValue")
        )
        for name, number in (("Modulus", numbers.n), ("Exponent", numbers.e)):
            raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
            etree.SubElement(rsa_value, _ds(name)).text = base64.b64encode(raw).decode()
    else:
        assert certificate is not None
        der = certificate.public_bytes(serialization.Encoding.DER)
        x509_data = etree.SubElement(key_info, _ds("X509Data"))
        etree.SubElement(x509_data, _ds("X509Certificate")).text = base64.b64encode(der).decode()
    root.append(signature)
    signature_value.text = base64.b64encode(_sign(key, method, _c14n(signed_info, c14n))).decode()
    return etree.tostring(root)


def _sign(key: object, method: str, data: bytes) -> bytes:
    if method == HMAC_SHA256:
        assert isinstance(key, bytes)
        return hmac.new(key, data, "sha256").digest()
    # SHA-1 on purpose: the attack tests need a correctly made rsa-sha1 signature.
    hash_algorithm = hashes.SHA1() if method == RSA_SHA1 else hashes.SHA256()  # noqa: S303
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hash_algorithm)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hash_algorithm)))
    size = (key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def load_key(key_pem: bytes) -> object:
    return serialization.load_pem_private_key(key_pem, password=None)
