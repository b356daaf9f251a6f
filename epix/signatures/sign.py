"""Signing under EPIX-DSIG-1: one enveloped ``ds:Signature``, last child of the root."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree
from signxml.algorithms import SignatureConstructionMethod
from signxml.signer import SignatureReference, XMLSigner

from epix.errors import EpixError
from epix.signatures.keys import check_identity, load_signing_key
from epix.signatures.profile import DIGESTS, ECDSA_METHODS, EXC_C14N, RSA_METHODS, ds
from epix.xml import parse_xml

_XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


class _WholeDocumentSigner(XMLSigner):
    """signxml's enveloped signer, pinned to one Reference with ``URI=""``.

    signxml would reference ``#<Id>`` when the root carries an Id attribute; the profile wants
    the whole document, whatever the root's attributes.
    """

    def _unpack(self, data: Any, references: Any) -> Any:
        sig_root, doc_root, c14n_inputs, _ = super()._unpack(data, None)  # type: ignore[arg-type]
        return sig_root, doc_root, c14n_inputs, [SignatureReference(URI="")]


def sign_document(xml: bytes, key_pem: bytes, cert_pem: bytes, *, digest: str = "sha256") -> bytes:
    """Sign ``xml`` with the key and its leaf certificate; returns the signed document's bytes.

    Raises ``EpixError`` for unparseable or already signed input, and ``ValueError`` when the key
    is weak, of another kind, or does not belong to the certificate (caller's configuration).
    """
    if digest not in DIGESTS:
        raise ValueError(f"Unknown digest {digest!r}; use one of {', '.join(DIGESTS)}.")
    check_identity(key_pem, cert_pem)
    key = load_signing_key(key_pem)
    methods = RSA_METHODS if isinstance(key, rsa.RSAPrivateKey) else ECDSA_METHODS
    root = parse_xml(xml)
    if root.tag == ds("Signature") or next(root.iter(ds("Signature")), None) is not None:
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
    signer = _WholeDocumentSigner(
        method=SignatureConstructionMethod.enveloped,
        signature_algorithm=methods[digest],
        digest_algorithm=DIGESTS[digest],
        c14n_algorithm=EXC_C14N,
    )
    signed = signer.sign(root, key=key, cert=cert_pem.decode("ascii"))
    return _XML_DECLARATION + etree.tostring(signed, encoding="UTF-8", xml_declaration=False)
