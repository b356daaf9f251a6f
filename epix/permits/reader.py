"""From XML to ``Permit``: find the ``CITESEPermit`` element wherever it travels, then map boxes.

The boxes are mapped by ``epix.permits.mapping`` (compiled: it reads libxml2's tree in C);
``read_permit`` is re-exported here so that callers have one reader module.

A permit arrives bare, inside an EPIX envelope (base64 payload, byte-exact, parsed again with the
same hardened parser) or inside the SOAP body of the UNEP-WCMC EPIX hub, whose ``CITESEPermit``
root is unqualified while its children are qualified. Whatever the wrapping, the caller gets the
permit element in the ``CITESEPermit:2`` namespace.
"""

from __future__ import annotations

import binascii

from lxml import etree

from epix.errors import EpixError
from epix.permits.legacy import LEGACY_ROOT_TAGS, translate_v1
from epix.permits.locations import source_line
from epix.permits.mapping import read_permit
from epix.xml import parse_xml
from epix.xml.namespaces import CITES_PERMIT, EPIX_ENVELOPE
from epix.xml.parse import DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH

PERMIT_TAG = f"{{{CITES_PERMIT}}}CITESEPermit"
ENVELOPE_TAG = f"{{{EPIX_ENVELOPE}}}Envelope"
PAYLOAD_TAG = f"{{{EPIX_ENVELOPE}}}Payload"
SOAP_NAMESPACES = (
    "http://schemas.xmlsoap.org/soap/envelope/",
    "http://www.w3.org/2003/05/soap-envelope",
)

__all__ = ["envelope_payload", "extract_permit_element", "read_permit"]


def _local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _qualify(element: etree._Element) -> etree._Element:
    """Put the unqualified root of the Toolkit v2 SOAP sample into the permit namespace."""
    element.tag = PERMIT_TAG
    return element


def envelope_payload(envelope: etree._Element) -> bytes:
    """The signed document an EPIX envelope carries: its ``Payload`` base64-decoded, byte-exact."""
    payload = next(envelope.iter(PAYLOAD_TAG), None)
    if payload is None or not (payload.text or "").strip():
        raise EpixError.of(
            "EPIX-XML-005",
            "The EPIX envelope has no Payload.",
            location="/Envelope/Payload",
            line=source_line(envelope),
        )
    try:
        return binascii.a2b_base64(
            "".join((payload.text or "").split()).encode("ascii"), strict_mode=True
        )
    except (binascii.Error, UnicodeEncodeError):
        raise EpixError.of(
            "EPIX-XML-005",
            "The EPIX envelope's Payload is not valid base64.",
            location="/Envelope/Payload",
            line=source_line(payload),
        ) from None


def extract_permit_element(
    root: etree._Element,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> etree._Element:
    """The ``CITESEPermit`` element in a bare document, an EPIX envelope or a SOAP body.

    A Toolkit v1 ``CBFShip`` (bare or in a SOAP body) is translated to v2 in place
    (``epix.permits.legacy``). Raises ``EpixError`` (EPIX-XML-005) when no permit in the right
    namespace is there.
    """
    tag = root.tag
    if tag == PERMIT_TAG:
        return root
    if tag == "CITESEPermit":
        return _qualify(root)
    if tag in LEGACY_ROOT_TAGS:
        return translate_v1(root)
    if tag == ENVELOPE_TAG:
        inner = parse_xml(envelope_payload(root), max_bytes=max_bytes, max_depth=max_depth)
        if inner.tag == "CITESEPermit":
            return _qualify(inner)
        if inner.tag != PERMIT_TAG:
            raise _wrong_root(inner, "The envelope's payload is not a CITESEPermit")
        return inner
    if isinstance(tag, str) and tag.startswith("{") and tag[1:].split("}")[0] in SOAP_NAMESPACES:
        for candidate in root.iter(PERMIT_TAG, "CITESEPermit", *LEGACY_ROOT_TAGS):
            if candidate.tag in LEGACY_ROOT_TAGS:
                return translate_v1(candidate)
            return candidate if candidate.tag == PERMIT_TAG else _qualify(candidate)
        raise _wrong_root(root, "The SOAP message carries no CITESEPermit")
    raise _wrong_root(root, "The document is not a CITESEPermit")


def _wrong_root(element: etree._Element, what: str) -> EpixError:
    tag = str(element.tag)
    namespace = tag[1:].split("}")[0] if tag.startswith("{") else ""
    found = f"{_local_name(tag)} in namespace '{namespace}'" if namespace else _local_name(tag)
    return EpixError.of(
        "EPIX-XML-005",
        f"{what}: found {found}; expected CITESEPermit in namespace '{CITES_PERMIT}'.",
        location="/" + _local_name(tag),
        line=source_line(element),
    )
