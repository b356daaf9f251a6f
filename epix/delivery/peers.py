"""Where a message goes and how a peer's answer is trusted.

On a hub every Party's inbox is local. On a Party node a message for this node's own Party (or
for a Party whose registry endpoint is this node) is local too; anything else goes to the
peer node's ``/v1/messages`` at the endpoint the Secretariat's registry publishes, with the API
key that peer issued to this node. The peer answers with a node-signed receipt, which is
verified against the registry (role ``node`` of the destination Party) before the delivery
counts: trust comes from the registry, never from the answer itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from lxml import etree
from sqlalchemy.orm import Session

from epix.delivery.webhooks import http_origin
from epix.errors import EpixError, Finding
from epix.exchange.node_identity import NODE_ROLE
from epix.exchange.receipts import REJECTED
from epix.outbound import unsendable
from epix.registry.service import endpoint_for, travels_in_clear
from epix.registry.trust import RegistryTrustStore
from epix.settings import NodeMode, Settings
from epix.signatures import verify_document
from epix.xml.namespaces import EPIX_RECEIPT

MESSAGES_PATH = "/v1/messages"


@dataclass(frozen=True, slots=True)
class LocalRoute:
    """Into the destination Party's inbox on this node, in the transaction that completes."""

    party: str


@dataclass(frozen=True, slots=True)
class PeerRoute:
    """POST to another node's submit endpoint."""

    url: str
    api_key: str | None


@dataclass(frozen=True, slots=True)
class Unroutable:
    """No way to reach the Party now (no endpoint in the registry, or one that would carry the
    message in clear); retried until give-up, so a corrected registry still delivers it."""

    reason: str
    code: str = "EPIX-DLV-010"


Route = LocalRoute | PeerRoute | Unroutable


class PeerDirectory(Protocol):
    """Answers "at which node does Party P receive messages" (None: it runs no node)."""

    def endpoint_of(self, session: Session, party: str) -> str | None: ...


class RegistryDirectory:
    """Node endpoints as published in the registry."""

    def endpoint_of(self, session: Session, party: str) -> str | None:
        return endpoint_for(session, party) or None


class ReceiptVerifier(Protocol):
    """Checks a peer's receipt for ``message_id``; returns the findings (empty means trusted)."""

    def verify(
        self, session: Session, *, peer_party: str, message_id: str, receipt: bytes
    ) -> list[Finding]: ...


def messages_url(endpoint: str) -> str:
    """The submit URL under a node's published base URL."""
    base = endpoint.rstrip("/")
    if base.endswith(MESSAGES_PATH):
        return base
    if base.endswith("/v1"):
        base = base[: -len("/v1")]
    return base + MESSAGES_PATH


def route_for(
    session: Session, *, destination_party: str, settings: Settings, directory: PeerDirectory
) -> Route:
    """Decide where a Party-addressed message goes (webhooks go to their own URL)."""
    if settings.node_mode is NodeMode.HUB or destination_party == settings.node_party:
        return LocalRoute(destination_party)
    endpoint = directory.endpoint_of(session, destination_party)
    if endpoint is None:
        return Unroutable(f"The registry lists no node endpoint for Party {destination_party}.")
    origin = http_origin(endpoint)
    if origin is None:  # a registry document's endpoint is checked only as https?://.+
        return Unroutable(
            f"The registry's endpoint for Party {destination_party}, {endpoint!r}, is not an "
            "absolute http(s) URL with a host and a valid port."
        )
    if origin == http_origin(settings.node_base_url):
        return LocalRoute(destination_party)
    if travels_in_clear(endpoint):  # e.g. from a registry published before this was refused
        return Unroutable(
            f"The registry's endpoint for Party {destination_party}, {endpoint}, is plain "
            "http; the message and the API key would travel in clear.",
            code="EPIX-DLV-012",
        )
    url = messages_url(endpoint)
    problem = unsendable(url)
    if problem is not None:  # passed the registry's checks, yet no request can go there
        return Unroutable(
            f"The registry's endpoint for Party {destination_party}, {endpoint}, cannot be "
            f"sent to: {problem}"
        )
    return PeerRoute(url, settings.peer_api_keys.get(destination_party))


class RegistryReceiptVerifier:
    """A receipt counts only if the destination Party's registered node key signed it (fail
    closed), it names our message id, and it does not say the message was rejected."""

    def verify(
        self, session: Session, *, peer_party: str, message_id: str, receipt: bytes
    ) -> list[Finding]:
        try:
            trust = RegistryTrustStore(session)
        except EpixError as refused:  # the registry copy lapsed (EPIX-REG-017): retry later
            return list(refused.findings)
        verdict = verify_document(receipt, party=peer_party, role=NODE_ROLE, trust=trust)
        if not verdict.valid or verdict.signed_element is None:
            return list(verdict.findings) or [
                Finding("EPIX-SIG-016", "The peer's receipt could not be verified.", "/")
            ]
        root = verdict.signed_element
        if etree.QName(root).namespace != EPIX_RECEIPT:
            return [Finding("EPIX-DLV-002", "The peer's answer is not an EPIX receipt.", "/")]
        said_id = root.findtext(f"{{{EPIX_RECEIPT}}}MessageId")
        if said_id != message_id:
            return [
                Finding(
                    "EPIX-DLV-002",
                    f"The receipt is for message {said_id!r}, not {message_id!r}.",
                    "/Receipt/MessageId",
                )
            ]
        if root.findtext(f"{{{EPIX_RECEIPT}}}Status") == REJECTED:
            return [Finding("EPIX-DLV-006", "The peer's receipt rejects the message.", "/Receipt")]
        return []
