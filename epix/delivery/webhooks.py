"""Webhook subscriptions, event fan-out into the outbox, and the HMAC signature scheme.

A Party's system subscribes a URL to some events and receives a secret once; rotating it
issues a new one, also shown once. Every delivery carries
``X-EPIX-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``, with a
second ``v1=`` under the replaced secret for a grace period after a rotation (as Stripe does),
computed when the request is sent (so retries carry a fresh timestamp), plus
``X-EPIX-Event`` and ``X-EPIX-Delivery`` (stable across retries, for de-duplication).
Receivers check it with ``verify_webhook_signature``; polling the inbox remains the fallback.

The secret must be usable at every delivery, so it cannot be hashed; it is stored sealed with
AES-256-GCM under a key derived (HKDF) from the node's session secret and opened only to sign.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpcore
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from epix.auth.session_secret import derived_key
from epix.db.base import table_of, utcnow
from epix.db.prepared import Prepared
from epix.delivery.models import OutboxKind, OutboxMessage, WebhookSubscription
from epix.delivery.outbox import DEFAULT_GIVE_UP_SECONDS, enqueue
from epix.errors import EpixError
from epix.outbound import DeadlineBackend, unsendable
from epix.settings import Settings

SIGNATURE_HEADER = "X-EPIX-Signature"
EVENT_HEADER = "X-EPIX-Event"
DELIVERY_HEADER = "X-EPIX-Delivery"

# Events a Party's system may subscribe to; the service that causes each one publishes it.
WEBHOOK_EVENTS = frozenset(
    {
        "message.received",  # a message landed in the Party's inbox
        "endorsement.received",  # an endorsement of one of the Party's permits arrived
        "status.changed",  # a permit the Party pulled or looked up was cancelled or replaced
        "delivery.failed",  # one of the Party's outgoing messages gave up (resendable)
    }
)
_SEALED_PREFIX = "v1:"
_NONCE_BYTES = 12


class UnreadableSecret(Exception):
    """A stored webhook secret does not open under this node's key (its secret changed?)."""


def webhook_key(settings: Settings) -> bytes:
    """The AES-256 key sealing webhook secrets at rest, derived from the session secret.

    Reuses the node's one secret (EPIX_SECRET_KEY or the data directory's session-secret)
    instead of a second key store; HKDF with its own ``info`` keeps the two uses apart.
    """
    return derived_key(settings, b"epix webhook secrets v1")


def seal_secret(key: bytes, secret: str, *, party: str) -> str:
    """``secret`` encrypted for storage; bound to its Party so rows cannot swap secrets."""
    nonce = secrets.token_bytes(_NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, secret.encode("utf-8"), party.encode("ascii"))
    return _SEALED_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")


def is_sealed(stored: str) -> bool:
    """False for a secret written before sealing existed (plain text)."""
    return stored.startswith(_SEALED_PREFIX)


def open_secret(key: bytes, stored: str, *, party: str) -> str:
    """The secret as sealed by ``seal_secret`` (a legacy plain-text value is returned as is)."""
    if not is_sealed(stored):
        return stored
    try:
        raw = base64.urlsafe_b64decode(stored[len(_SEALED_PREFIX) :])
        nonce, sealed = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
        return AESGCM(key).decrypt(nonce, sealed, party.encode("ascii")).decode("utf-8")
    except (InvalidTag, ValueError) as exc:
        raise UnreadableSecret(str(exc) or type(exc).__name__) from None


_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def http_origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL, the default port filled in; None for any other.

    Also the cross-site check's reading of a browser's ``Origin`` (``epix.api.security``)."""
    try:  # urlsplit raises for a malformed IPv6 host ("http://[::1"), .port for a bad port
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return None
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return parts.scheme, parts.hostname.lower().rstrip("."), port


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to now; none if it does not resolve (yet)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return sorted({str(info[4][0]) for info in infos})


def _is_internal(address: str) -> bool:
    """Loopback, private (RFC 1918/4193), link-local, multicast, unspecified or reserved."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return True  # not an address we can judge: treat it as unsafe
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_unspecified
        or ip.is_reserved
        or not ip.is_global
    )


def internal_address_of(url: str) -> str | None:
    """The internal address the URL's host is or resolves to, if any (the SSRF check when
    subscribing; deliveries judge the address they connect to: ``PublicAddressTransport``)."""
    origin = http_origin(url.strip())
    if origin is None:
        return None
    _scheme, host, port = origin
    if host in _LOOPBACK_NAMES:
        return host
    return next((address for address in _resolve(host, port) if _is_internal(address)), None)


class InternalAddress(Exception):
    """At connect time, a webhook host resolved to an address the SSRF rules refuse."""

    def __init__(self, host: str, address: str) -> None:
        super().__init__(
            f"The webhook host {host} resolves to the internal address {address}; not "
            "delivered (EPIX_WEBHOOK_ALLOW_PRIVATE_ADDRESSES is off)."
        )


class PublicAddressBackend(DeadlineBackend):
    """Resolves the host itself and connects only to an address it has just judged public.

    Judging the name first and letting the HTTP client resolve it again would leave a window in
    which DNS can be re-pointed at an internal address (rebinding); here the address judged is
    the address connected to. TLS still checks the certificate against the host name and sends
    it as SNI, and the Host header keeps the name: httpcore takes both from the URL. Give it to
    ``epix.outbound.outbound_client``: connections are direct, never through a proxy (a proxy
    would resolve and connect on the node's behalf, out of the check's reach).
    """

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = [host] if host in _LOOPBACK_NAMES else _resolve(host, port)
        internal = next((address for address in addresses if _is_internal(address)), None)
        if internal is not None:
            raise InternalAddress(host, internal)
        failure: Exception = httpcore.ConnectError(f"The webhook host {host} does not resolve.")
        for address in addresses:  # every one of them public: the first that answers
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure


def check_webhook_url(
    url: str, *, node_base_url: str, allow_private_addresses: bool = False
) -> str:
    """Refuse (EPIX-DLV-004) a URL that is not http(s), points at this node, or is internal.

    "This node" is its public base URL, or a loopback/unspecified address on the node's port:
    a subscription must never make the node call itself in a loop. Unless the operator set
    ``allow_private_addresses`` (EPIX_WEBHOOK_ALLOW_PRIVATE_ADDRESSES), a host that is or
    resolves to an internal address is refused, so a subscriber cannot make the node probe
    its own network (SSRF). A name that does not resolve yet is accepted; delivery re-checks.
    """
    origin = http_origin(url.strip())
    if origin is None or len(url) > 2000:
        raise EpixError.of(
            "EPIX-DLV-004",
            "The webhook URL must be an absolute http:// or https:// URL with a host.",
            "url",
        )
    problem = unsendable(url.strip())
    if problem is not None:
        raise EpixError.of("EPIX-DLV-004", f"The webhook URL cannot be sent to: {problem}", "url")
    node = http_origin(node_base_url)
    _scheme, host, port = origin
    if node is not None:
        _node_scheme, node_host, node_port = node
        same_host = host == node_host or (_is_loopback(host) and _is_loopback(node_host))
        if port == node_port and (same_host or _is_loopback(host)):
            raise EpixError.of("EPIX-DLV-004", "The webhook URL points at this node itself.", "url")
    if not allow_private_addresses:
        internal = internal_address_of(url)
        if internal is not None:
            raise EpixError.of(
                "EPIX-DLV-004",
                f"The webhook host {host} is or resolves to the internal address {internal} "
                "(loopback, private, link-local, multicast or reserved); the node operator "
                "must set EPIX_WEBHOOK_ALLOW_PRIVATE_ADDRESSES to allow that.",
                "url",
            )
    return url.strip()


def _check_events(events: Iterable[str]) -> list[str]:
    chosen = sorted(set(events))
    unknown = [event for event in chosen if event not in WEBHOOK_EVENTS]
    if unknown or not chosen:
        raise EpixError.of(
            "EPIX-DLV-007",
            f"Unknown webhook event(s) {unknown}; choose from {sorted(WEBHOOK_EVENTS)}."
            if unknown
            else f"Name at least one event from {sorted(WEBHOOK_EVENTS)}.",
            "events",
        )
    return chosen


def _new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class CreatedSubscription:
    """A subscription and its new secret (created or rotated), which is shown this once only."""

    subscription: WebhookSubscription
    secret: str


def create_subscription(
    session: Session,
    *,
    party: str,
    url: str,
    events: Iterable[str],
    created_by: str,
    node_base_url: str,
    secret_key: bytes,
    allow_private_addresses: bool = False,
) -> CreatedSubscription:
    """Store a subscription with a new secret, sealed with ``secret_key`` (``webhook_key``)."""
    clean_url = check_webhook_url(
        url, node_base_url=node_base_url, allow_private_addresses=allow_private_addresses
    )
    secret = _new_secret()
    subscription = WebhookSubscription(
        party=party,
        url=clean_url,
        events=_check_events(events),
        secret=seal_secret(secret_key, secret, party=party),
        active=True,
        created_at=utcnow(),
        created_by=created_by,
    )
    session.add(subscription)
    session.flush()
    return CreatedSubscription(subscription, secret)


def list_subscriptions(session: Session, *, party: str | None) -> Sequence[WebhookSubscription]:
    query = select(WebhookSubscription).where(WebhookSubscription.active.is_(True))
    if party is not None:
        query = query.where(WebhookSubscription.party == party)
    return session.scalars(query.order_by(WebhookSubscription.id)).all()


def get_subscription(
    session: Session, subscription_id: int, *, party: str | None, for_update: bool = False
) -> WebhookSubscription:
    """An active subscription; one of another Party is reported as unknown (no probing).
    ``for_update`` locks its row until the caller's transaction ends."""
    subscription = session.get(WebhookSubscription, subscription_id, with_for_update=for_update)
    if (
        subscription is None
        or not subscription.active
        or (party is not None and subscription.party != party)
    ):
        raise EpixError.of(
            "EPIX-DLV-009", f"No webhook subscription {subscription_id}.", "subscription_id"
        )
    return subscription


def disable_subscription(
    session: Session, subscription_id: int, *, party: str | None
) -> WebhookSubscription:
    """Stop future events; rows already in the outbox are still delivered."""
    subscription = get_subscription(session, subscription_id, party=party)
    subscription.active = False
    subscription.disabled_at = utcnow()
    session.flush()
    return subscription


def stop_subscriptions_of(session: Session, username: str) -> list[int]:
    """Stop every active subscription ``username`` made, as their user is disabled or removed
    (their queued deliveries are dropped too): a standing feed of the Party's events to a URL
    of that person's choosing must end with their keys and sessions. The ids stopped."""
    rows = session.scalars(
        select(WebhookSubscription)
        .where(WebhookSubscription.created_by == username, WebhookSubscription.active.is_(True))
        .order_by(WebhookSubscription.id)
    ).all()
    now = utcnow()
    for row in rows:
        row.active = False
        row.disabled_at = now
    return [row.id for row in rows]


def rotate_secret(
    session: Session,
    subscription_id: int,
    *,
    party: str | None,
    secret_key: bytes,
    grace_seconds: int,
    now: datetime | None = None,
) -> CreatedSubscription:
    """Give the subscription a new secret (returned this once), sealed like the first one.

    For ``grace_seconds`` deliveries are signed with the new and the replaced secret, so the
    receiver can switch without refusing any; 0 drops the replaced secret at once (a leaked
    one). A replaced secret that no longer opens (the node's key changed) is dropped too.
    """
    # Locked: of two rotations at once, the second replaces the first's new secret knowingly.
    subscription = get_subscription(session, subscription_id, party=party, for_update=True)
    now = now or utcnow()
    previous: str | None = None
    if grace_seconds > 0:
        try:
            replaced = open_secret(secret_key, subscription.secret, party=subscription.party)
            previous = seal_secret(secret_key, replaced, party=subscription.party)
        except UnreadableSecret:
            previous = None
    secret = _new_secret()
    subscription.secret = seal_secret(secret_key, secret, party=subscription.party)
    subscription.previous_secret = previous
    subscription.previous_secret_until = (
        now + timedelta(seconds=grace_seconds) if previous is not None else None
    )
    session.flush()
    return CreatedSubscription(subscription, secret)


def previous_secret_valid_until(
    subscription: WebhookSubscription, now: datetime
) -> datetime | None:
    """Until when deliveries are also signed with the replaced secret (None: not at all)."""
    until = subscription.previous_secret_until
    if subscription.previous_secret is None or until is None or until <= now:
        return None
    return until


_SUBSCRIPTIONS = table_of(WebhookSubscription)
# Every submission to a hosted Party asks this; built once, run as Core (no ORM objects).
_ACTIVE_TARGETS = Prepared(  # run once per accepted submission
    select(_SUBSCRIPTIONS.c.id, _SUBSCRIPTIONS.c.url, _SUBSCRIPTIONS.c.events)
    .where(_SUBSCRIPTIONS.c.active.is_(True), _SUBSCRIPTIONS.c.party == bindparam("party"))
    .order_by(_SUBSCRIPTIONS.c.id)
)


def publish_event(
    session: Session,
    *,
    party: str,
    event: str,
    event_id: str,
    data: Mapping[str, Any],
    give_up_seconds: int = DEFAULT_GIVE_UP_SECONDS,
) -> list[OutboxMessage]:
    """Queue ``event`` for every active subscription of ``party`` to it (caller's transaction).

    ``event_id`` must be stable for the same occurrence (e.g. the message id), so publishing
    twice queues once and receivers can de-duplicate on ``X-EPIX-Delivery``.
    """
    if event not in WEBHOOK_EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    occurred_at = utcnow()
    rows = []
    for subscription in _ACTIVE_TARGETS.all(session, {"party": party}):
        if event not in subscription.events:
            continue
        delivery_id = f"{event}:{event_id}"
        body = json.dumps(
            {
                "event": event,
                "id": delivery_id,
                "party": party,
                "occurred_at": occurred_at.isoformat().replace("+00:00", "Z"),
                "data": dict(data),
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        rows.append(
            enqueue(
                session,
                kind=OutboxKind.WEBHOOK,
                destination_party=party,
                payload=body,
                message_id=delivery_id,
                content_type="application/json",
                headers={EVENT_HEADER: event, DELIVERY_HEADER: delivery_id},
                target_url=subscription.url,
                sender_party=party,
                subscription_id=subscription.id,
                give_up_seconds=give_up_seconds,
            )
        )
    return rows


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign_webhook(secret: str, body: bytes, now: datetime, previous: str | None = None) -> str:
    """The ``X-EPIX-Signature`` value for ``body`` sent at ``now``: ``t=...,v1=...``, with a
    second ``v1=`` under the ``previous`` secret while a rotation's grace period runs."""
    timestamp = int(now.timestamp())
    header = f"t={timestamp},v1={_mac(secret, timestamp, body)}"
    if previous is not None:
        header += f",v1={_mac(previous, timestamp, body)}"
    return header


def verify_webhook_signature(
    secret: str, header: str | None, body: bytes, now: datetime, window: int = 300
) -> bool:
    """For receivers: True only if ``header`` signs ``body`` with ``secret`` within ``window``.

    Accepts several ``v1=`` values (a sender rotating secrets); compares in constant time; a
    timestamp older or newer than ``window`` seconds is refused, which stops replays.
    """
    if not header:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        # ASCII only: str.isdigit also takes "²", and compare_digest refuses non-ASCII text;
        # at most 20 digits, past which int() refuses and no Unix time lies anyway.
        if not value.isascii():
            continue
        if name == "t" and value.isdigit() and len(value) <= 20:
            timestamp = int(value)
        elif name == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    if abs(int(now.timestamp()) - timestamp) > window:
        return False
    expected = _mac(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)
