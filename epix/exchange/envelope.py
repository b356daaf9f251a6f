"""The EPIX envelope: routing data of one message, from HTTP headers or an envelope document.

Either way the payload stays byte-exact: headers travel beside the signed document, and the
envelope document carries it base64-encoded, so its SHA-256 and signature survive transport.
"""

from __future__ import annotations

import base64
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from lxml import etree

from epix.errors import EpixError, Finding
from epix.permits.reader import envelope_payload
from epix.xml import load_schema, parse_xml
from epix.xml.namespaces import EPIX_ENVELOPE

ENVELOPE_SCHEMA = "epix/envelope.xsd"
DOCUMENT_TYPES = ("permit", "endorsement", "status")
HEADER_MESSAGE_ID = "x-epix-message-id"
HEADER_FROM = "x-epix-from"
HEADER_TO = "x-epix-to"
HEADER_DOCUMENT_TYPE = "x-epix-document-type"
HEADER_CONVERSATION_ID = "x-epix-conversation-id"
HEADER_SECURITY_TOKEN = "x-epix-security-token"  # noqa: S105 - a header name, not a secret

_IDENTIFIER = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_PARTY = re.compile(r"[A-Z]{2}|CITES")
# Printed on the paper permit and typed at the border; an HTTP header carries only ISO-8859-1,
# so a token beyond ASCII would be one string when submitted and another when typed.
_TOKEN = re.compile(r"[!-~]{8,128}")


@dataclass(frozen=True, slots=True)
class Envelope:
    """Who sends what to whom; the message id is the sender's idempotency key."""

    message_id: str
    sender: str
    recipient: str
    document_type: str
    conversation_id: str | None = None
    sent_at: datetime | None = None
    security_token: str | None = None


def _check(findings: list[Finding], value: str | None, name: str, pattern: re.Pattern[str]) -> str:
    if value is None or not value.strip():
        findings.append(Finding("EPIX-REQ-004", f"{name} is required.", name))
        return ""
    if not pattern.fullmatch(value):
        findings.append(Finding("EPIX-REQ-004", f"{name} has an invalid value: {value!r}.", name))
    return value


# The headers a submission is routed and read by (each may come once), as they are spelled.
SINGLE_HEADERS = {
    "content-type": "Content-Type",
    HEADER_MESSAGE_ID: "X-EPIX-Message-Id",
    HEADER_FROM: "X-EPIX-From",
    HEADER_TO: "X-EPIX-To",
    HEADER_DOCUMENT_TYPE: "X-EPIX-Document-Type",
    HEADER_CONVERSATION_ID: "X-EPIX-Conversation-Id",
    HEADER_SECURITY_TOKEN: "X-EPIX-Security-Token",
}


def ensure_single_headers(names: Iterable[str]) -> None:
    """Refuse (EPIX-REQ-004) a submission that repeats a routing header.

    With two ``X-EPIX-To`` lines, which one counts depends on who reads them (a proxy, a log,
    the node): the node would route by one while the sender's records show the other.
    """
    counts = Counter(name.lower() for name in names)
    findings = [
        Finding(
            "EPIX-REQ-004",
            f"The {spelled} header was sent {counts[name]} times; send it once.",
            spelled,
        )
        for name, spelled in SINGLE_HEADERS.items()
        if counts[name] > 1
    ]
    if findings:
        raise EpixError(findings)


def envelope_from_headers(headers: Mapping[str, str]) -> Envelope:
    """Read the X-EPIX-* headers (names case-insensitive) or refuse with EPIX-REQ-004."""
    lowered = {key.lower(): value for key, value in headers.items()}
    findings: list[Finding] = []
    message_id = _check(findings, lowered.get(HEADER_MESSAGE_ID), "X-EPIX-Message-Id", _IDENTIFIER)
    sender = _check(findings, lowered.get(HEADER_FROM), "X-EPIX-From", _PARTY)
    recipient = _check(findings, lowered.get(HEADER_TO), "X-EPIX-To", _PARTY)
    document_type = lowered.get(HEADER_DOCUMENT_TYPE, "permit").strip()
    if document_type not in DOCUMENT_TYPES:
        findings.append(
            Finding(
                "EPIX-REQ-004",
                f"X-EPIX-Document-Type must be one of {', '.join(DOCUMENT_TYPES)}.",
                "X-EPIX-Document-Type",
            )
        )
    conversation_id = lowered.get(HEADER_CONVERSATION_ID) or None
    if conversation_id is not None:
        _check(findings, conversation_id, "X-EPIX-Conversation-Id", _IDENTIFIER)
    token = lowered.get(HEADER_SECURITY_TOKEN) or None
    if token is not None and not _TOKEN.fullmatch(token):
        findings.append(
            Finding(
                "EPIX-REQ-004",
                "X-EPIX-Security-Token must be 8 to 128 characters: ASCII letters, digits and "
                "punctuation, no spaces.",
                "X-EPIX-Security-Token",
            )
        )
    if findings:
        raise EpixError(findings)
    return Envelope(message_id, sender, recipient, document_type, conversation_id, None, token)


def _text(root: etree._Element, name: str) -> str | None:
    element = root.find(f"{{{EPIX_ENVELOPE}}}{name}")
    return element.text.strip() if element is not None and element.text else None


def open_envelope(data: bytes, *, max_bytes: int, max_depth: int) -> tuple[Envelope, bytes]:
    """Parse and validate an envelope document; return its fields and the exact payload bytes."""
    root = parse_xml(data, max_bytes=max_bytes, max_depth=max_depth)
    if root.tag != f"{{{EPIX_ENVELOPE}}}Envelope":
        raise EpixError.of(
            "EPIX-XML-005", f"Expected an {{{EPIX_ENVELOPE}}}Envelope, got {root.tag}.", "/"
        )
    schema = load_schema(ENVELOPE_SCHEMA)
    if not schema.validate(root):
        raise EpixError(
            [
                Finding("EPIX-SCHEMA-001", error.message, error.path or None, error.line or None)
                for error in schema.error_log  # type: ignore[attr-defined]  # stubs lack __iter__
            ][:20]
        )
    sent_at_text = _text(root, "SentAt")
    # In lines or not: xs:base64Binary allows whitespace, as MIME encoders write it.
    payload = envelope_payload(root)
    try:
        sent_at = datetime.fromisoformat(sent_at_text) if sent_at_text else None
    except ValueError as exc:
        raise EpixError.of(
            "EPIX-SCHEMA-001", f"Bad envelope sending time: {exc}", "/Envelope/SentAt"
        ) from None
    envelope = Envelope(
        message_id=_text(root, "MessageId") or "",
        sender=_text(root, "From") or "",
        recipient=_text(root, "To") or "",
        document_type=_text(root, "DocumentType") or "",
        conversation_id=_text(root, "ConversationId"),
        sent_at=sent_at,
        security_token=_text(root, "SecurityToken"),
    )
    return envelope, payload


def build_envelope(envelope: Envelope, payload: bytes) -> bytes:
    """Wrap signed bytes in an envelope document (used by clients, the demo and peers)."""
    root = etree.Element(f"{{{EPIX_ENVELOPE}}}Envelope", nsmap={None: EPIX_ENVELOPE})  # type: ignore[dict-item]  # lxml: None = default ns
    root.set("version", "1")

    def add(name: str, value: str | None) -> None:
        if value is not None:
            etree.SubElement(root, f"{{{EPIX_ENVELOPE}}}{name}").text = value

    add("MessageId", envelope.message_id)
    add("From", envelope.sender)
    add("To", envelope.recipient)
    add("DocumentType", envelope.document_type)
    add("ConversationId", envelope.conversation_id)
    add("SentAt", envelope.sent_at.isoformat() if envelope.sent_at else None)
    add("SecurityToken", envelope.security_token)
    add("Payload", base64.b64encode(payload).decode("ascii"))
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
