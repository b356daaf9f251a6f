"""Fail-closed verification under EPIX-DSIG-1.

signxml does the cryptography; everything it leaves open is decided here first, each with its
own code: the document's shape (one ``ds:Signature``, last child of the root, one Reference with
``URI=""``, exactly the profile's transforms and algorithms), the key's strength, and trust —
the certificate in the document counts only if the caller's ``TrustStore`` registered it for the
claimed Party and role, unrevoked and valid at the signing time. signxml is then called with
that registered certificate as its explicit trust anchor, never with its default CA bundle.

``verify_document`` never raises for bad input: every problem becomes a finding in the verdict.
Business data must be read only from ``Verdict.signed_element``.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hmac
import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from lxml import etree
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod
from signxml.exceptions import InvalidCertificate, InvalidDigest, InvalidInput, InvalidSignature
from signxml.util import _remove_sig
from signxml.verifier import SignatureConfiguration, VerifyResult, XMLVerifier

from epix.errors import EpixError, Finding
from epix.signatures.profile import (
    ALLOWED_DIGEST_URIS,
    ALLOWED_METHOD_URIS,
    DIGESTS,
    DS_PREFIX,
    EXC_C14N,
    MAX_CERTIFICATE_BYTES,
    TRANSFORMS,
    describe_key,
    ds,
    key_problem,
    method_matches_key,
)
from epix.signatures.trust import (
    TrustedCertificate,
    TrustStore,
    as_utc,
    fingerprint_of,
    normalise_role,
)
from epix.xml import parse_xml
from epix.xml.namespaces import DSIG

log = logging.getLogger(__name__)

_SIGNATURE = ds("Signature")
_SIGNED_INFO = ds("SignedInfo")
_SIGNATURE_VALUE = ds("SignatureValue")
_KEY_INFO = ds("KeyInfo")
_C14N_METHOD = ds("CanonicalizationMethod")
_SIGNATURE_METHOD = ds("SignatureMethod")
_REFERENCE = ds("Reference")
_TRANSFORMS = ds("Transforms")
_TRANSFORM = ds("Transform")
_DIGEST_METHOD = ds("DigestMethod")
_DIGEST_VALUE = ds("DigestValue")
_X509_DATA = ds("X509Data")
_X509_CERTIFICATE = ds("X509Certificate")
_OBJECT = ds("Object")
_DS_NAMESPACE_PREFIX = f"{{{DSIG}}}"
_SIGNATURE_CHILDREN = (_SIGNED_INFO, _SIGNATURE_VALUE, _KEY_INFO)
_REFERENCE_CHILDREN = (_TRANSFORMS, _DIGEST_METHOD, _DIGEST_VALUE)
# Informational siblings of the certificate that other signers add; they are never used.
_X509_DATA_EXTRAS = frozenset(
    ds(name) for name in ("X509IssuerSerial", "X509SubjectName", "X509SKI")
)

# signxml's own checks, narrowed to the profile: defence in depth behind ours.
_SIGNXML_CONFIG = SignatureConfiguration(
    require_x509=True,
    location="./",
    expect_references=1,
    signature_methods=frozenset(SignatureMethod(uri) for uri in ALLOWED_METHOD_URIS),
    digest_algorithms=frozenset(DIGESTS.values()),
    ignore_ambiguous_key_info=False,
    default_reference_c14n_method=CanonicalizationMethod(EXC_C14N),
)


class _ParsedTreeVerifier(XMLVerifier):
    """signxml, handed the tree our hardened parser already built, digesting the profile's one
    reference from one copy of it.

    signxml serialises and re-parses an element it is given, and then the whole document twice
    more for the reference; that is wasted work here (every step after ``get_root`` works on
    copies, so the caller's tree is never modified). SignedInfo, the signature value and the
    certificate stay entirely signxml's.
    """

    def get_root(self, data: Any) -> Any:
        if isinstance(data, etree._Element):
            return data
        return super().get_root(data)  # type: ignore[no-untyped-call]

    def _verify_reference(
        self,
        reference: etree._Element,
        index: int,
        root: etree._Element,
        uri_resolver: Any,
        c14n_algorithm: Any,
        signature: etree._Element,
        signature_key_used: Any,
    ) -> VerifyResult:
        """The profile's one reference, digested from one copy of the document.

        signxml's generic path serialises and re-parses the whole document twice before
        canonicalising it (~140 us of a 10 KB permit's ~700). EPIX-DSIG-1 has exactly one shape
        (URI="", enveloped-signature then exclusive C14N without parameters), checked before
        signxml runs and again here: one C-level copy of the document, the signature removed as
        the enveloped transform says (its tail text stays), one canonicalisation. Unlike
        signxml, which digests the root element only, processing instructions outside the root
        are digested too, as the specification and xmlsec1 say. What is returned
        as signed is, as in signxml, parsed from the canonical bytes that were digested.
        """
        transforms = reference.find(_TRANSFORMS)
        digest_method = reference.find(_DIGEST_METHOD)
        digest_value = reference.find(_DIGEST_VALUE)
        if (
            reference.get("URI") != ""
            or transforms is None
            or not _profile_transforms(transforms)
            or digest_method is None
            or digest_value is None
        ):
            raise InvalidInput("The reference is not EPIX-DSIG-1's whole-document reference.")
        digest_algorithm = DigestAlgorithm(digest_method.get("Algorithm"))
        self.check_digest_alg_expected(digest_algorithm)  # type: ignore[no-untyped-call]
        document = _document_copy(root)
        _remove_sig(self._get_signature(document.getroot()))  # type: ignore[no-untyped-call]
        signed_data = etree.tostring(document, method="c14n", exclusive=True, with_comments=False)
        expected = base64.b64decode(digest_value.text or "")
        if not hmac.compare_digest(expected, self._get_digest(signed_data, digest_algorithm)):
            raise InvalidDigest(f'Digest mismatch for reference {index} (URI="")')
        signed_xml = self._fromstring(signed_data)  # type: ignore[no-untyped-call]
        public_key = signature_key_used.public_bytes(
            Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
        )
        return VerifyResult(signed_data, signed_xml, signature, signature_key=public_key)


def _document_copy(root: etree._Element) -> etree._ElementTree:
    """What URI="" names, copied: the whole document without comments (XML-DSig 4.4.3.2), so
    processing instructions before and after the root element are signed content, as xmlsec1
    digests them (a stylesheet instruction slipped in front of a signed permit must break its
    signature). An element inside a larger document is taken as a document of its own."""
    if root.getparent() is None:
        return copy.deepcopy(root.getroottree())
    return etree.ElementTree(copy.deepcopy(root))


@dataclass(frozen=True)
class Verdict:
    """The outcome of one verification: valid or not, why, who signed and what was signed."""

    valid: bool
    findings: tuple[Finding, ...]
    signing_time: datetime
    certificate: TrustedCertificate | None = None
    signed_element: etree._Element | None = None
    signed_bytes: bytes | None = None
    signature_algorithm: str | None = None
    digest_algorithm: str | None = None
    key_description: str | None = None
    document_fingerprint: str | None = None

    @property
    def codes(self) -> list[str]:
        return [finding.code for finding in self.findings]

    def raise_if_invalid(self) -> None:
        """Turn a refusal into the ``EpixError`` the pipelines propagate."""
        if not self.valid:
            raise EpixError(list(self.findings))

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly summary for the CLI and the API."""
        return {
            "valid": self.valid,
            "errors": [finding.as_dict() for finding in self.findings],
            "signing_time": self.signing_time.isoformat(),
            "signer": self.certificate.as_dict() if self.certificate else None,
            "signature_algorithm": self.signature_algorithm,
            "digest_algorithm": self.digest_algorithm,
            "key": self.key_description,
            "document_certificate_fingerprint": self.document_fingerprint,
        }


@dataclass
class _Facts:
    """What has been learnt so far, reported even when verification stops early."""

    signature_algorithm: str | None = None
    digest_algorithm: str | None = None
    key_description: str | None = None
    document_fingerprint: str | None = None
    certificate: TrustedCertificate | None = None
    findings: list[Finding] = field(default_factory=list)


class _Refused(Exception):
    """Stops verification at the first fatal stage; the findings are already in the facts."""


def verify_document(
    xml: bytes | etree._Element,
    *,
    party: str,
    role: str,
    trust: TrustStore,
    at: datetime | None = None,
) -> Verdict:
    """Verify ``xml`` as signed for ``party`` in ``role`` at ``at`` (default: now).

    ``at`` is the signing time the caller vouches for: now for a fresh submission, the time
    of receipt for an archived document. An element is treated as the document's root.
    """
    when = as_utc(at) if at is not None else datetime.now(UTC)
    facts = _Facts()
    try:
        signed_element, signed_bytes = _verify(xml, party, role, trust, when, facts)
    except _Refused:
        signed_element, signed_bytes = None, None
    except EpixError as exc:  # the hardened parse: DTD, entities, size, depth, not XML
        facts.findings.extend(exc.findings)
        signed_element, signed_bytes = None, None
    except Exception:  # fail closed: anything unexpected is a refusal, never a 500
        log.warning("signature verification failed unexpectedly", exc_info=True)
        facts.findings.append(
            Finding("EPIX-SIG-016", "The signature could not be verified.", location="/")
        )
        signed_element, signed_bytes = None, None
    valid = signed_element is not None and not facts.findings
    return Verdict(
        valid=valid,
        findings=tuple(facts.findings),
        signing_time=when,
        certificate=facts.certificate if valid else None,
        signed_element=signed_element if valid else None,
        signed_bytes=signed_bytes if valid else None,
        signature_algorithm=facts.signature_algorithm,
        digest_algorithm=facts.digest_algorithm,
        key_description=facts.key_description,
        document_fingerprint=facts.document_fingerprint,
    )


def _verify(
    xml: bytes | etree._Element,
    party: str,
    role: str,
    trust: TrustStore,
    when: datetime,
    facts: _Facts,
) -> tuple[etree._Element, bytes]:
    root = parse_xml(xml) if isinstance(xml, bytes) else xml
    if not isinstance(xml, bytes):
        docinfo: Any = root.getroottree().docinfo
        if docinfo.doctype or docinfo.internalDTD is not None:
            # The tree came from some other parser, entities possibly expanded: refuse it.
            raise _refuse(
                facts, "EPIX-XML-002", "DOCTYPE and ENTITY declarations are not accepted.", root
            )
    signature = _locate_signature(root, facts)
    certificate_text = _check_signature_layout(signature, facts)
    fingerprint = _document_certificate(certificate_text, signature, facts)
    trusted = _trusted_certificate(fingerprint, party, role, trust, when, signature, facts)
    return _check_cryptography(root, trusted, when, signature, facts)


def _refuse(facts: _Facts, code: str, message: str, element: etree._Element) -> _Refused:
    facts.findings.append(Finding(code, message, location=_where(element), line=_line(element)))
    return _Refused()


def _locate_signature(root: etree._Element, facts: _Facts) -> etree._Element:
    """Exactly one ds:Signature, the root's last child; no comments anywhere in the root."""
    if root.tag == _SIGNATURE:
        raise _refuse(
            facts, "EPIX-SIG-017", "An enveloping signature is outside EPIX-DSIG-1.", root
        )
    signatures: list[etree._Element] = []
    comment: etree._Element | None = None
    for node in root.iter(_SIGNATURE, etree.Comment):
        if node.tag == _SIGNATURE:
            signatures.append(node)
        elif comment is None:
            comment = node
    if comment is not None:
        facts.findings.append(
            Finding(
                "EPIX-SIG-018",
                "The document contains an XML comment; comments are not signed, so a document "
                "with comments is refused.",
                location=_where(comment.getparent()),
                line=_line(comment),
            )
        )
    if not signatures:
        raise _refuse(facts, "EPIX-SIG-001", "The document has no ds:Signature.", root)
    if len(signatures) > 1:
        raise _refuse(
            facts,
            "EPIX-SIG-002",
            f"The document has {len(signatures)} signatures; EPIX-DSIG-1 allows exactly one.",
            signatures[1],
        )
    signature = signatures[0]
    if signature.getparent() is not root:
        raise _refuse(
            facts, "EPIX-SIG-003", "The signature is not a direct child of the root.", signature
        )
    if signature.getnext() is not None:
        raise _refuse(
            facts, "EPIX-SIG-003", "The signature is not the last child of the root.", signature
        )
    if facts.findings:
        raise _Refused()
    return signature


def _check_signature_layout(signature: etree._Element, facts: _Facts) -> str:
    """The profile's shape, algorithm by algorithm; returns the X509Certificate's text."""
    for element in signature.iter():
        tag = element.tag
        if not isinstance(tag, str) or not tag.startswith(_DS_NAMESPACE_PREFIX):
            raise _refuse(
                facts, "EPIX-SIG-017", "Only XML-DSig elements may appear in ds:Signature.", element
            )
        if element.prefix != DS_PREFIX:
            raise _refuse(
                facts, "EPIX-SIG-017", "XML-DSig elements must use the ds: prefix.", element
            )
        if tag in (_SIGNATURE_VALUE, _DIGEST_VALUE) and not _is_base64(element.text):
            raise _refuse(
                facts,
                "EPIX-SIG-017",
                f"ds:{etree.QName(element).localname} must hold base64 data.",
                element,
            )
    children = list(signature)
    tags = tuple(child.tag for child in children)
    if tags[:2] != _SIGNATURE_CHILDREN[:2] or _OBJECT in tags:
        raise _refuse(
            facts,
            "EPIX-SIG-017",
            "ds:Signature must hold SignedInfo, SignatureValue and KeyInfo, in that order "
            "(no ds:Object).",
            signature,
        )
    # Algorithms first: an HMAC or SHA-1 signature is refused as such, whatever its KeyInfo.
    _check_signed_info(children[0], facts)
    if tags[2:] != _SIGNATURE_CHILDREN[2:]:
        raise _refuse(
            facts,
            "EPIX-SIG-010",
            "The signature must end with one KeyInfo carrying the signer's certificate.",
            signature,
        )
    return _check_key_info(children[2], facts)


def _is_base64(text: str | None) -> bool:
    try:
        base64.b64decode("".join((text or "").split()).encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        return False
    return True


def _check_signed_info(signed_info: etree._Element, facts: _Facts) -> None:
    parts = list(signed_info)
    if len(parts) < 3 or parts[0].tag != _C14N_METHOD or parts[1].tag != _SIGNATURE_METHOD:
        raise _refuse(
            facts,
            "EPIX-SIG-017",
            "SignedInfo must hold CanonicalizationMethod, SignatureMethod and one Reference.",
            signed_info,
        )
    c14n, method, references = parts[0], parts[1], parts[2:]
    if c14n.get("Algorithm") != EXC_C14N or len(c14n):
        raise _refuse(
            facts,
            "EPIX-SIG-006",
            f"SignedInfo canonicalization {c14n.get('Algorithm')!r} is not allowed; "
            f"only {EXC_C14N} without parameters.",
            c14n,
        )
    method_uri = method.get("Algorithm") or ""
    facts.signature_algorithm = method_uri
    if method_uri not in ALLOWED_METHOD_URIS or len(method):
        raise _refuse(
            facts,
            "EPIX-SIG-008",
            f"Signature algorithm {method_uri!r} is not allowed; use RSA or ECDSA with SHA-2.",
            method,
        )
    if len(references) != 1 or any(ref.tag != _REFERENCE for ref in references):
        raise _refuse(
            facts,
            "EPIX-SIG-004",
            f"SignedInfo has {len(references)} entries after SignatureMethod; exactly one "
            'Reference with URI="" is allowed.',
            signed_info,
        )
    reference = references[0]
    if reference.get("URI") != "":
        raise _refuse(
            facts,
            "EPIX-SIG-004",
            f'Reference URI {reference.get("URI")!r} is not allowed; it must be "" (the whole '
            "document).",
            reference,
        )
    ref_parts = list(reference)
    ref_tags = tuple(part.tag for part in ref_parts)
    if ref_tags != _REFERENCE_CHILDREN:
        code = "EPIX-SIG-005" if _TRANSFORMS not in ref_tags else "EPIX-SIG-017"
        raise _refuse(
            facts,
            code,
            "Reference must hold Transforms, DigestMethod and DigestValue, in that order.",
            reference,
        )
    transforms, digest_method, _ = ref_parts
    if not _profile_transforms(transforms):
        raise _refuse(
            facts,
            "EPIX-SIG-005",
            "Transforms must be exactly enveloped-signature then exclusive C14N, without "
            "parameters.",
            transforms,
        )
    digest_uri = digest_method.get("Algorithm") or ""
    facts.digest_algorithm = digest_uri
    if digest_uri not in ALLOWED_DIGEST_URIS or len(digest_method):
        raise _refuse(
            facts,
            "EPIX-SIG-007",
            f"Digest algorithm {digest_uri!r} is not allowed; use SHA-256, SHA-384 or SHA-512.",
            digest_method,
        )


def _profile_transforms(transforms: etree._Element) -> bool:
    """Exactly enveloped-signature then exclusive C14N, neither with parameters."""
    return tuple(t.get("Algorithm") for t in transforms) == TRANSFORMS and all(
        t.tag == _TRANSFORM and not len(t) for t in transforms
    )


def _check_key_info(key_info: etree._Element, facts: _Facts) -> str:
    items = list(key_info)
    if len(items) != 1 or items[0].tag != _X509_DATA:
        raise _refuse(
            facts,
            "EPIX-SIG-010",
            "KeyInfo must hold exactly one X509Data with the signer's certificate (a bare "
            "KeyValue or KeyName is not accepted).",
            key_info,
        )
    certificates = [item for item in items[0] if item.tag == _X509_CERTIFICATE]
    others = [item for item in items[0] if item.tag != _X509_CERTIFICATE]
    if len(certificates) != 1 or any(item.tag not in _X509_DATA_EXTRAS for item in others):
        raise _refuse(
            facts,
            "EPIX-SIG-010",
            f"X509Data must hold exactly the signer's leaf certificate; found "
            f"{len(certificates)} X509Certificate element(s).",
            items[0],
        )
    return certificates[0].text or ""


@lru_cache(maxsize=512)
def _load_certificate(der: bytes) -> tuple[x509.Certificate, str]:
    """Certificates repeat across documents; parse and fingerprint each once."""
    certificate = x509.load_der_x509_certificate(der)
    return certificate, fingerprint_of(certificate)


def _document_certificate(text: str, signature: etree._Element, facts: _Facts) -> str:
    """The fingerprint of the leaf certificate in KeyInfo, once it is parsed, strong enough and
    of the signature method's family. The certificate itself is never trusted."""
    certificate_element = signature[2][0]
    try:
        der = base64.b64decode("".join(text.split()), validate=True)
        if len(der) > MAX_CERTIFICATE_BYTES:
            message = (
                f"X509Certificate holds {len(der)} bytes; a signing certificate may have at "
                f"most {MAX_CERTIFICATE_BYTES}."
            )
            raise _refuse(facts, "EPIX-SIG-010", message, certificate_element)
        certificate, fingerprint = _load_certificate(der)
        key = certificate.public_key()
    except (binascii.Error, ValueError):
        message = "X509Certificate does not hold a valid certificate."
        raise _refuse(facts, "EPIX-SIG-010", message, certificate_element) from None
    facts.document_fingerprint = fingerprint
    facts.key_description = describe_key(key)
    problem = key_problem(key)
    if problem:
        raise _refuse(facts, "EPIX-SIG-009", problem, certificate_element)
    if not method_matches_key(facts.signature_algorithm or "", key):
        raise _refuse(
            facts,
            "EPIX-SIG-008",
            f"Signature algorithm {facts.signature_algorithm!r} does not fit the "
            f"{describe_key(key)} key of the certificate.",
            signature[0][1],
        )
    return fingerprint


def _trusted_certificate(
    fingerprint: str,
    party: str,
    role: str,
    trust: TrustStore,
    when: datetime,
    signature: etree._Element,
    facts: _Facts,
) -> TrustedCertificate:
    """The registry's entry for the document's certificate, bound to ``party`` and ``role``."""
    where = signature[2][0]
    role = normalise_role(role)
    trusted = next((c for c in trust.candidates(party, role) if c.fingerprint == fingerprint), None)
    if trusted is None:
        owner = trust.owner_of(fingerprint)
        if owner is not None and owner.party.upper() != party.upper():
            raise _refuse(
                facts,
                "EPIX-SIG-015",
                f"The signing certificate is registered to Party {owner.party}, not {party}.",
                where,
            )
        detail = f" (it is registered for role {owner.role})" if owner is not None else ""
        raise _refuse(
            facts,
            "EPIX-SIG-012",
            f"The signing certificate {fingerprint[:16]}… is not registered for Party {party}, "
            f"role {role}{detail}.",
            where,
        )
    facts.certificate = trusted
    if trusted.revoked_by(when):
        assert trusted.revoked_at is not None
        facts.findings.append(
            Finding(
                "EPIX-SIG-013",
                f"The signing certificate was revoked at {as_utc(trusted.revoked_at).isoformat()}"
                f", before the signing time {when.isoformat()}"
                + (f" ({trusted.revocation_reason})" if trusted.revocation_reason else "")
                + ".",
                location=_where(where),
                line=_line(where),
            )
        )
    start, end = trusted.valid_from(), trusted.valid_until()
    if not start <= when <= end:
        facts.findings.append(
            Finding(
                "EPIX-SIG-014",
                f"The signing certificate is valid from {start.isoformat()} to "
                f"{end.isoformat()}; the signing time {when.isoformat()} is outside.",
                location=_where(where),
                line=_line(where),
            )
        )
    if facts.findings:
        raise _Refused()
    return trusted


def _check_cryptography(
    root: etree._Element,
    trusted: TrustedCertificate,
    when: datetime,
    signature: etree._Element,
    facts: _Facts,
) -> tuple[etree._Element, bytes]:
    """signxml verifies digest and signature value with the registered certificate only."""
    config = replace(_SIGNXML_CONFIG, verification_time=when)
    try:
        result = _ParsedTreeVerifier().verify(
            root, x509_cert=trusted.certificate, expect_config=config
        )
    except InvalidDigest:
        raise _refuse(
            facts,
            "EPIX-SIG-011",
            "The digest does not match: the document was changed after it was signed.",
            signature[0][2],
        ) from None
    except InvalidCertificate as exc:
        raise _refuse(facts, "EPIX-SIG-014", str(exc), signature[2][0]) from None
    except InvalidSignature:
        raise _refuse(
            facts,
            "EPIX-SIG-011",
            "The signature value does not verify with the registered certificate.",
            signature[1],
        ) from None
    except etree.DocumentInvalid as exc:
        # signxml checks ds:Signature against the XML Signature schema (e.g. a SignatureValue
        # that is not base64): name the flaw instead of the catch-all EPIX-SIG-016.
        raise _refuse(
            facts,
            "EPIX-SIG-017",
            f"The signature does not follow the XML Signature schema: {exc}",
            signature,
        ) from None
    if isinstance(result, list) or result.signed_xml is None:
        raise _refuse(facts, "EPIX-SIG-016", "The signed content is not XML.", signature)
    return result.signed_xml, result.signed_data


def _where(element: etree._Element | None) -> str:
    """A readable XPath to ``element`` using the document's prefixes, for findings."""
    steps: list[str] = []
    node = element
    while node is not None:
        if isinstance(node.tag, str):
            local = etree.QName(node).localname
            step = f"{node.prefix}:{local}" if node.prefix else local
        else:
            step = "node()"
        parent = node.getparent()
        if parent is not None:
            same = [sibling for sibling in parent if sibling.tag == node.tag]
            if len(same) > 1:
                step += f"[{same.index(node) + 1}]"
        steps.append(step)
        node = parent
    return "/" + "/".join(reversed(steps))


def _line(node: etree._Element) -> int | None:
    line = node.sourceline
    return line if isinstance(line, int) else None
