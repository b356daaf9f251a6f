"""EPIX-DSIG-1 in data: the algorithm URIs and key sizes the profile allows, nothing else.

Signing and verification read the same tables, so what we produce is exactly what we accept.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod

from epix.xml.namespaces import DSIG

DS_PREFIX = "ds"
EXC_C14N = CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0.value
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
# The Reference's transforms, in this order and no other.
TRANSFORMS: tuple[str, ...] = (ENVELOPED, EXC_C14N)

DIGESTS: dict[str, DigestAlgorithm] = {
    "sha256": DigestAlgorithm.SHA256,
    "sha384": DigestAlgorithm.SHA384,
    "sha512": DigestAlgorithm.SHA512,
}
RSA_METHODS: dict[str, SignatureMethod] = {
    "sha256": SignatureMethod.RSA_SHA256,
    "sha384": SignatureMethod.RSA_SHA384,
    "sha512": SignatureMethod.RSA_SHA512,
}
ECDSA_METHODS: dict[str, SignatureMethod] = {
    "sha256": SignatureMethod.ECDSA_SHA256,
    "sha384": SignatureMethod.ECDSA_SHA384,
    "sha512": SignatureMethod.ECDSA_SHA512,
}

ALLOWED_DIGEST_URIS: frozenset[str] = frozenset(d.value for d in DIGESTS.values())
RSA_METHOD_URIS: frozenset[str] = frozenset(m.value for m in RSA_METHODS.values())
ECDSA_METHOD_URIS: frozenset[str] = frozenset(m.value for m in ECDSA_METHODS.values())
ALLOWED_METHOD_URIS: frozenset[str] = RSA_METHOD_URIS | ECDSA_METHOD_URIS

MIN_RSA_BITS = 2048
# A signer's leaf certificate is 1-2 KB; the registry API takes a PEM of at most 64 KiB.
# Larger ones are refused unparsed (they would otherwise sit in the certificate cache).
MAX_CERTIFICATE_BYTES = 48 * 1024
ALLOWED_CURVES: dict[str, str] = {"secp256r1": "P-256", "secp384r1": "P-384"}


def ds(local_name: str) -> str:
    """Clark notation for an XML-DSig element name."""
    return f"{{{DSIG}}}{local_name}"


def describe_key(key: PublicKeyTypes) -> str:
    """A short human name for a public key, e.g. ``RSA-2048`` or ``ECDSA P-256``."""
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA {ALLOWED_CURVES.get(key.curve.name, key.curve.name)}"
    return type(key).__name__


def key_problem(key: PublicKeyTypes) -> str | None:
    """Why a key may not sign under EPIX-DSIG-1, or None when it may."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            return f"RSA key of {key.key_size} bits; at least {MIN_RSA_BITS} are required."
        return None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ALLOWED_CURVES:
            return f"Curve {key.curve.name} is not allowed; use P-256 or P-384."
        return None
    return f"{describe_key(key)} keys are not allowed; use RSA (2048 bits or more) or ECDSA."


def method_matches_key(method_uri: str, key: PublicKeyTypes) -> bool:
    """True when the SignatureMethod belongs to the key's family (RSA or ECDSA)."""
    if isinstance(key, rsa.RSAPublicKey):
        return method_uri in RSA_METHOD_URIS
    if isinstance(key, ec.EllipticCurvePublicKey):
        return method_uri in ECDSA_METHOD_URIS
    return False
