"""Signed receipts ({urn:epix:receipt:1}): the node's proof of what it received and decided.

A receipt binds the message id, the SHA-256 of the exact bytes received, the time received,
the outcome and every code. It is signed by the node key (EPIX-DSIG-1), so a sender can prove
later what the node acknowledged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from lxml import etree

from epix.errors import Finding
from epix.exchange.node_identity import NodeIdentity
from epix.signatures.sign import sign_document
from epix.xml import parse_xml
from epix.xml.namespaces import EPIX_RECEIPT

RECEIPT_SCHEMA = "epix/receipt.xsd"
ACCEPTED = "accepted"
ACCEPTED_WITH_WARNINGS = "accepted_with_warnings"
REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class ReceiptFacts:
    """Everything a receipt states, before it is signed."""

    sha256: str
    received_at: datetime
    status: str
    node_party: str
    findings: Sequence[Finding] = ()
    message_id: str | None = None
    sender: str | None = None
    recipient: str | None = None


def outcome_status(findings: Sequence[Finding]) -> str:
    """accepted, accepted_with_warnings or rejected, from the findings' severities."""
    if any(f.severity == "error" for f in findings):
        return REJECTED
    return ACCEPTED_WITH_WARNINGS if findings else ACCEPTED


def receipt_xml(facts: ReceiptFacts) -> bytes:
    """The unsigned receipt document."""
    root = etree.Element(f"{{{EPIX_RECEIPT}}}Receipt", nsmap={None: EPIX_RECEIPT})  # type: ignore[dict-item]  # lxml: None = default ns
    root.set("version", "1")

    def add(parent: etree._Element, name: str, value: str | None) -> None:
        if value is not None:
            etree.SubElement(parent, f"{{{EPIX_RECEIPT}}}{name}").text = value

    add(root, "MessageId", facts.message_id)
    add(root, "From", facts.sender)
    add(root, "To", facts.recipient)
    add(root, "DocumentSHA256", facts.sha256)
    add(root, "ReceivedAt", facts.received_at.isoformat(timespec="milliseconds"))
    add(root, "Status", facts.status)
    add(root, "Node", facts.node_party)
    findings = etree.SubElement(root, f"{{{EPIX_RECEIPT}}}Findings")
    for finding in facts.findings:
        element = etree.SubElement(findings, f"{{{EPIX_RECEIPT}}}Finding")
        element.set("code", finding.code)
        element.set("severity", finding.severity.value)
        if finding.line:
            element.set("line", str(finding.line))
        add(element, "Message", finding.message)
        add(element, "Location", finding.location)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def sign_receipt(facts: ReceiptFacts, identity: NodeIdentity) -> bytes:
    """The receipt, signed by the node (EPIX-DSIG-1)."""
    return sign_document(receipt_xml(facts), identity.key_pem, identity.cert_pem)


def receipt_outcome(receipt: bytes) -> tuple[str | None, list[str]]:
    """The status and finding codes a receipt states (one this node stored after verifying
    it): the sender's view of what the far end decided."""
    root = parse_xml(receipt)
    codes = [str(f.get("code", "")) for f in root.iter(f"{{{EPIX_RECEIPT}}}Finding")]
    return root.findtext(f"{{{EPIX_RECEIPT}}}Status"), codes
