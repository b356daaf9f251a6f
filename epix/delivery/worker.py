"""The outbox worker: claim due rows with a lease, deliver them, record the outcome under a fence.

A worker never holds a database transaction while it talks to a peer: it claims a batch (one
short transaction), sends each message over HTTP (none), then records the outcome (one short
transaction that writes only if the lease is still its own). Delivery into a local inbox is
the exception: the inbox insert and the "delivered" mark share one transaction, so the effect
happens exactly once. For peers the effect is exactly once because the peer is idempotent on
the message id and answers a retry with its original receipt.

It runs as a thread inside the node (``start_worker_thread``) or as ``epix worker``; any
number of workers may share one database.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Collection
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

import httpx
from sqlalchemy import update
from sqlalchemy.orm import Session

from epix.audit.context import far_end_text_for_audit, url_for_audit
from epix.audit.service import record_event
from epix.db import Database
from epix.db.base import utcnow
from epix.db.trouble import OutageLog, database_trouble
from epix.delivery import outbox, peers
from epix.delivery.backoff import CircuitBreaker, backoff_delay
from epix.delivery.local import ExchangeInbox
from epix.delivery.models import OutboxKind, WebhookSubscription
from epix.delivery.outbox import Claim
from epix.delivery.webhooks import (
    SIGNATURE_HEADER,
    InternalAddress,
    PublicAddressBackend,
    UnreadableSecret,
    is_sealed,
    open_secret,
    previous_secret_valid_until,
    publish_event,
    seal_secret,
    sign_webhook,
    webhook_key,
)
from epix.errors import EpixError
from epix.outbound import DeadlineBackend, DeadlineExceeded, outbound_client, unsendable
from epix.settings import Settings

log = logging.getLogger("epix.delivery")

_TRANSIENT_STATUSES = frozenset({408, 425, 429})
# A peer's refusal of an endorsement whose permit it does not hold (yet): retried for a while.
PERMIT_NOT_HELD = "EPIX-MSG-011"


class LocalInbox(Protocol):
    """Puts a claimed message into a Party's inbox on this node, in the caller's transaction."""

    def deliver(self, session: Session, claim: Claim) -> None: ...


@dataclass(frozen=True, slots=True)
class WebhookRoute:
    url: str
    secret: str
    previous_secret: str | None = None  # also signed with, during a rotation's grace period


@dataclass(frozen=True, slots=True)
class Closed:
    """The webhook subscription was disabled after the row was queued, or its secret no longer
    opens: nothing to deliver."""

    reason: str
    code: str = "EPIX-DLV-009"


Route = peers.Route | WebhookRoute | Closed


@dataclass(frozen=True, slots=True)
class Job:
    claim: Claim
    route: Route


class Result(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"
    DEFERRED = "deferred"  # handed back untried (circuit open, or too little lease left)
    LEASE_LOST = "lease_lost"  # another worker owns the row now; this outcome was discarded


@dataclass(frozen=True, slots=True)
class _Answer:
    """What a peer or webhook receiver said, or why it could not be asked."""

    status: int | None = None
    body: bytes = b""
    retry_after: float | None = None
    error: str | None = None
    error_code: str = "EPIX-DLV-001"  # with ``error``: unreachable, or (011) answer cut off
    refused: str | None = None  # not asked: the host resolved to an internal address

    @property
    def reachable(self) -> bool:
        """The far end is up and deciding (a refusal is an answer, not an outage)."""
        return self.status is not None and not (
            self.status >= 500 or self.status in _TRANSIENT_STATUSES
        )


def new_owner_id() -> str:
    """Host, process and a random part: unique per worker, readable in the outbox table."""
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:16]}"


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in delay-seconds (ASCII digits only: ``str.isdigit`` also takes "²")."""
    value = response.headers.get("retry-after", "").strip()
    return float(value) if value.isascii() and value.isdigit() else None


def _peer_problem(body: bytes) -> tuple[list[str], object]:
    """The EPIX codes and the detail of a peer's problem+json answer (none if it is not one)."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: arrays or objects nested deep
        return [], None
    if not isinstance(document, dict):
        return [], None
    errors = document.get("errors")
    codes = (
        [e.get("code") for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
    )
    return [str(code) for code in codes if code], document.get("detail")


def _peer_codes(codes: list[str], detail: object) -> str:
    """A peer's refusal as the failure reason: its codes, then its detail."""
    text = " ".join(codes)
    return f"{text}: {detail}" if detail else text


class Worker:
    """Claims and delivers outbox rows; share one per process, run it from one loop."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        *,
        local_inbox: LocalInbox,
        verifier: peers.ReceiptVerifier,
        directory: peers.PeerDirectory | None = None,
        owner: str | None = None,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
    ) -> None:
        self.database = database
        self.settings = settings
        self.local_inbox = local_inbox
        self.verifier = verifier
        self.directory = directory or peers.RegistryDirectory()
        self.webhook_key = webhook_key(settings)
        self.client = self._http_client(None, settings.outbound_proxy)
        # Peers' endpoints come from the Secretariat's signed registry; webhook URLs from
        # subscribers, so (unless the operator allows internal hosts) every webhook connection
        # goes only to an address judged public at the moment of connecting, never by a proxy.
        self.webhook_client = (
            self.client
            if settings.webhook_allow_private_addresses and not settings.outbound_proxy
            else self._http_client(
                None if settings.webhook_allow_private_addresses else PublicAddressBackend(), None
            )
        )
        self.owner = owner or new_owner_id()
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 - retry jitter, not a secret
        self.breaker = CircuitBreaker(
            settings.outbox_circuit_failures, settings.outbox_circuit_cooldown_seconds
        )
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, settings.outbox_concurrency), thread_name_prefix="epix-deliver"
        )

    def _http_client(self, backend: DeadlineBackend | None, proxy: str | None) -> httpx.Client:
        return outbound_client(
            deadline_seconds=self.settings.outbound_deadline_seconds,
            timeout=self.settings.outbox_http_timeout_seconds,
            backend=backend,
            proxy=proxy,
            headers={"User-Agent": f"EPIX-node/{self.settings.node_party}"},
        )

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.client.close()
        self.webhook_client.close()

    # --- the loop ---------------------------------------------------------------------------

    def run_once(self) -> int:
        """Claim one batch, deliver all of it and return how many rows were claimed (``epix
        worker --once`` and tests; ``run`` does not wait for the slowest row of a batch)."""
        jobs = self.claim()
        for result in self._pool.map(self.process, jobs):
            log.debug("outbox row finished: %s", result)
        return len(jobs)

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set, then finish the deliveries in flight.

        Up to ``outbox_concurrency`` rows are in flight, at most ``outbox_peer_concurrency``
        of them to one destination, and a row is claimed as soon as a slot frees: a destination
        that hangs until the outbound deadline holds only its own slots, never the deliveries
        to the others. Each row is sent right after its claim, so its lease (longer than the
        deadline, see ``Settings``) covers the whole delivery. An idle or failing loop waits
        ``outbox_poll_seconds``.
        """
        log.info("outbox worker %s started", self.owner)
        outage = OutageLog(log, f"outbox worker {self.owner}", self.database.url)
        in_flight: dict[Future[Result], str] = {}
        while not stop.is_set():
            try:
                self._fill(in_flight)
            except Exception as exc:
                self._loop_failed(outage, exc)
                failed = True
            else:
                outage.succeeded()
                failed = False
            if in_flight and not failed:
                done = wait(
                    in_flight,
                    timeout=self.settings.outbox_poll_seconds,
                    return_when=FIRST_COMPLETED,
                ).done
            else:
                stop.wait(self.settings.outbox_poll_seconds)
                done = {future for future in in_flight if future.done()}
            self._finished(done, in_flight, outage)
        self._finished(wait(in_flight).done, in_flight, outage)
        log.info("outbox worker %s stopped", self.owner)

    def _fill(self, in_flight: dict[Future[Result], str]) -> None:
        """Claim rows into the free slots and start them; ``in_flight`` maps each running
        delivery to its destination's peer key."""
        capacity = max(1, self.settings.outbox_concurrency)
        per_peer = max(1, self.settings.outbox_peer_concurrency)
        while len(in_flight) < capacity:
            busy = Counter(in_flight.values())
            full = {peer for peer, count in busy.items() if count >= per_peer}
            # No single claim may give one destination more rows than it has slots left.
            room = per_peer - max(
                (count for peer, count in busy.items() if peer not in full), default=0
            )
            limit = min(capacity - len(in_flight), room, self.settings.outbox_batch_size)
            jobs = self.claim(limit, skip_peers=full)
            for job in jobs:
                in_flight[self._pool.submit(self.process, job)] = job.claim.peer_key
            if len(jobs) < limit:
                return

    def _finished(
        self,
        done: Collection[Future[Result]],
        in_flight: dict[Future[Result], str],
        outage: OutageLog,
    ) -> None:
        for future in done:
            del in_flight[future]
            error = future.exception()
            if error is None:
                log.debug("outbox row finished: %s", future.result())
            else:  # the row's lease runs out and it is retried
                self._loop_failed(outage, error)

    @staticmethod
    def _loop_failed(outage: OutageLog, error: BaseException) -> None:
        if not outage.failed(error):
            log.error("outbox worker iteration failed; retrying", exc_info=error)

    # --- claiming -----------------------------------------------------------------------------

    def claim(self, limit: int | None = None, *, skip_peers: Collection[str] = ()) -> list[Job]:
        """Lease due rows (skipping ``skip_peers`` and peers whose circuit is open) and decide
        each one's route."""
        now = self.clock()
        with self.database.unit_of_work() as session:
            claims = outbox.claim_due(
                session,
                owner=self.owner,
                lease_seconds=self.settings.outbox_lease_seconds,
                limit=limit or self.settings.outbox_batch_size,
                now=now,
                skip_peers=self.breaker.open_peers(now).union(skip_peers),
            )
            return [Job(claim, self._route(session, claim)) for claim in claims]

    def _route(self, session: Session, claim: Claim) -> Route:
        if claim.kind == OutboxKind.WEBHOOK.value:
            subscription = (
                session.get(WebhookSubscription, claim.subscription_id)
                if claim.subscription_id is not None
                else None
            )
            if subscription is None or not subscription.active or claim.target_url is None:
                return Closed(f"Webhook subscription {claim.subscription_id} was disabled.")
            problem = unsendable(claim.target_url)
            if problem is not None:  # stored before subscribing checked it
                return Closed(
                    f"The URL of webhook subscription {subscription.id} cannot be sent to: "
                    f"{problem}",
                    code="EPIX-DLV-004",
                )
            try:
                secret = open_secret(
                    self.webhook_key, subscription.secret, party=subscription.party
                )
            except UnreadableSecret:
                return Closed(
                    f"The secret of webhook subscription {subscription.id} does not decrypt "
                    "with this node's key (was EPIX_SECRET_KEY or the data directory's "
                    "session-secret changed?); rotate its secret or subscribe again.",
                    code="EPIX-DLV-013",
                )
            if not is_sealed(subscription.secret):  # stored before sealing: seal it now
                sealed = seal_secret(self.webhook_key, secret, party=subscription.party)
                # Only if unchanged: a rotation committed since this read must stand.
                session.execute(
                    update(WebhookSubscription)
                    .where(
                        WebhookSubscription.id == subscription.id,
                        WebhookSubscription.secret == subscription.secret,
                    )
                    .values(secret=sealed)
                    .execution_options(synchronize_session=False)
                )
            return WebhookRoute(
                claim.target_url, secret, self._previous_secret(session, subscription)
            )
        return peers.route_for(
            session,
            destination_party=claim.destination_party,
            settings=self.settings,
            directory=self.directory,
        )

    def _previous_secret(self, session: Session, subscription: WebhookSubscription) -> str | None:
        """The secret a rotation replaced, while its grace period runs; dropped after it."""
        if subscription.previous_secret is None:
            return None
        now = self.clock()
        if previous_secret_valid_until(subscription, now) is None:
            # Only if still expired: a rotation committed since this read must stand.
            session.execute(
                update(WebhookSubscription)
                .where(
                    WebhookSubscription.id == subscription.id,
                    WebhookSubscription.previous_secret_until <= now,
                )
                .values(previous_secret=None, previous_secret_until=None)
                .execution_options(synchronize_session=False)
            )
            return None
        try:
            return open_secret(
                self.webhook_key, subscription.previous_secret, party=subscription.party
            )
        except UnreadableSecret:
            return None

    # --- delivering ---------------------------------------------------------------------------

    def process(self, job: Job) -> Result:
        """Deliver one claimed row and record the outcome; never raises for a delivery problem.

        A fault of this node's own (a bug, a library raising what it should not) fails the row
        like an unanswered attempt: it is retried with backoff until its give-up time and
        audited, and a circuit probe it held is released. Raised instead, it left the row to be
        claimed again untouched at every lease, never given up, and kept its peer's probe
        taken, so nothing more went to that peer. Only a database outage is raised: the loop
        logs it once and the lease runs out for a retry.
        """
        claim, route = job.claim, job.route
        try:
            if isinstance(route, peers.LocalRoute):
                return self._deliver_local(claim)
            if isinstance(route, peers.Unroutable):
                return self._failed(claim, route.code, route.reason, permanent=False)
            if isinstance(route, Closed):
                return self._failed(claim, route.code, route.reason, permanent=True)
            return self._deliver_http(claim, route)
        except Exception as exc:
            if isinstance(exc, EpixError) and any(f.code == "EPIX-DLV-005" for f in exc.findings):
                log.warning("%s", exc)
                return Result.LEASE_LOST
            if database_trouble(exc) is not None:
                raise
            log.exception("delivery of outbox row %s failed", claim.id)
            self.breaker.release_probe(claim.peer_key)
            return self._failed(claim, "EPIX-DLV-001", type(exc).__name__, permanent=False)

    def _deliver_http(self, claim: Claim, route: peers.PeerRoute | WebhookRoute) -> Result:
        now = self.clock()
        not_before = self.breaker.allow(claim.peer_key, now)
        if not_before is not None and now >= claim.give_up_at:
            # Only a tried row meets its give-up time otherwise: behind an open circuit (one
            # probe per cool-down) a row would wait its turn as the probe, long past it.
            return self._failed(
                claim,
                "EPIX-DLV-003",
                f"Not tried again after its give-up time ({claim.give_up_at.isoformat()}): "
                "the far end kept failing and its circuit is open.",
                permanent=True,
            )
        too_late = now + timedelta(seconds=self.settings.outbound_deadline_seconds)
        if not_before is None and too_late >= claim.lease_expires_at:
            self.breaker.release_probe(claim.peer_key)
            not_before = now
        if not_before is not None:
            with self.database.unit_of_work() as session:
                outbox.release(session, claim, not_before=not_before)
            return Result.DEFERRED
        answer = self._send(claim, route)
        if answer.refused is not None:  # re-pointed since subscribing (DNS rebinding)
            self.breaker.release_probe(claim.peer_key)
            return self._failed(claim, "EPIX-DLV-004", answer.refused, permanent=True)
        if answer.reachable:
            self.breaker.record_success(claim.peer_key)
        else:
            self.breaker.record_failure(claim.peer_key, self.clock())
        if answer.status is None:
            return self._failed(
                claim, answer.error_code, answer.error or "no answer", permanent=False
            )
        if not 200 <= answer.status < 300:
            if answer.reachable:
                codes, detail = _peer_problem(answer.body)
                reason = f"HTTP {answer.status} {_peer_codes(codes, detail)}".strip()
                if claim.kind == OutboxKind.ENDORSEMENT.value and PERMIT_NOT_HELD in codes:
                    return self._waiting_for_permit(claim, reason, answer.status)
                return self._failed(
                    claim, "EPIX-DLV-006", reason, permanent=True, status=answer.status
                )
            return self._failed(
                claim,
                "EPIX-DLV-001",
                f"The far end answered HTTP {answer.status}.",
                permanent=False,
                status=answer.status,
                retry_after=answer.retry_after,
            )
        if isinstance(route, WebhookRoute):
            return self._delivered(claim, route_name="webhook", url=route.url, status=answer.status)
        return self._delivered_with_receipt(claim, route, answer)

    def _send(self, claim: Claim, route: peers.PeerRoute | WebhookRoute) -> _Answer:
        headers = {str(k): str(v) for k, v in claim.headers.items()}
        headers["Content-Type"] = claim.content_type
        client = self.client
        if isinstance(route, WebhookRoute):
            headers[SIGNATURE_HEADER] = sign_webhook(
                route.secret, claim.payload, self.clock(), route.previous_secret
            )
            client = self.webhook_client
        elif route.api_key:
            headers["Authorization"] = f"Bearer {route.api_key}"
        try:
            with client.stream("POST", route.url, content=claim.payload, headers=headers) as answer:
                return self._read_answer(answer)
        except InternalAddress as exc:
            return _Answer(refused=f"{exc} URL: {url_for_audit(route.url)}")
        except DeadlineExceeded as exc:
            return _Answer(error=f"{exc} Cut off.", error_code="EPIX-DLV-011")
        except httpx.HTTPError as exc:
            return _Answer(error=f"{type(exc).__name__}: {exc}".rstrip(": "))

    def _read_answer(self, response: httpx.Response) -> _Answer:
        """The answer's body, cut off past ``max_body_bytes`` (a receipt is a few kilobytes;
        an endless body would be read into memory). The client's deadline bounds its time."""
        limit = self.settings.max_body_bytes
        declared = response.headers.get("content-length", "")
        body = bytearray()
        too_large = declared.isascii() and declared.isdigit() and int(declared) > limit
        if not too_large:
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > limit:
                    too_large = True
                    break
        if too_large:
            return _Answer(
                error=f"HTTP {response.status_code}: the answer is larger than {limit} bytes; "
                "cut off.",
                error_code="EPIX-DLV-011",
            )
        return _Answer(response.status_code, bytes(body), _retry_after(response))

    def _delivered_with_receipt(
        self, claim: Claim, route: peers.PeerRoute, answer: _Answer
    ) -> Result:
        with self.database.unit_of_work() as session:
            findings = self.verifier.verify(
                session,
                peer_party=claim.destination_party,
                message_id=claim.message_id,
                receipt=answer.body,
            )
        if findings:
            reason = "; ".join(f"{f.code}: {f.message}" for f in findings)
            return self._failed(
                claim, "EPIX-DLV-002", reason, permanent=False, status=answer.status
            )
        return self._delivered(
            claim, route_name="peer", url=route.url, status=answer.status, receipt=answer.body
        )

    def _deliver_local(self, claim: Claim) -> Result:
        try:
            with self.database.unit_of_work() as session:
                outbox.mark_delivered(session, claim, now=self.clock())
                self.local_inbox.deliver(session, claim)
                self._audit_delivered(session, claim, route_name="inbox", url=None)
        except EpixError as error:
            if any(f.code == "EPIX-DLV-005" for f in error.findings):
                raise
            reason = "; ".join(f"{f.code}: {f.message}" for f in error.findings)
            return self._failed(claim, "EPIX-DLV-006", reason, permanent=True)
        return Result.DELIVERED

    # --- recording outcomes -------------------------------------------------------------------

    def _delivered(
        self,
        claim: Claim,
        *,
        route_name: str,
        url: str,
        status: int | None,
        receipt: bytes | None = None,
    ) -> Result:
        with self.database.unit_of_work() as session:
            outbox.mark_delivered(
                session, claim, receipt=receipt, response_status=status, now=self.clock()
            )
            self._audit_delivered(
                session, claim, route_name=route_name, url=url, status=status, receipt=receipt
            )
        return Result.DELIVERED

    def _audit_delivered(
        self,
        session: Session,
        claim: Claim,
        *,
        route_name: str,
        url: str | None,
        status: int | None = None,
        receipt: bytes | None = None,
    ) -> None:
        """The transmission and the far end's answer: its HTTP status and its receipt's hash
        (the receipt itself is kept on the outbox row)."""
        webhook = claim.kind == OutboxKind.WEBHOOK.value
        record_event(
            session,
            action="webhook.delivered" if webhook else "message.transmitted",
            outcome="ok",
            party=claim.sender_party or None,
            message_id=claim.message_id,
            payload=claim.payload,
            detail={
                "outbox_id": claim.id,
                "kind": claim.kind,
                "to": claim.destination_party,
                "route": route_name,
                "url": url_for_audit(url) if url else None,
                "attempts": claim.attempts,
                "response_status": status,
                "receipt_sha256": hashlib.sha256(receipt).hexdigest() if receipt else None,
            },
        )

    def _failed(
        self,
        claim: Claim,
        code: str,
        reason: str,
        *,
        permanent: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> Result:
        now = self.clock()
        retry_at = None if permanent else self._retry_at(claim, now, retry_after)
        reason = far_end_text_for_audit(reason)
        return self._record_failure(claim, code, reason, now=now, retry_at=retry_at, status=status)

    def _waiting_for_permit(self, claim: Claim, reason: str, status: int) -> Result:
        """The importing Party's node refused the endorsement because it does not hold the
        permit yet (EPIX-MSG-011): the permit may still reach it (a resent delivery), so the
        row is retried with the outbox's backoff until ``outbox_permit_wait_seconds`` after
        the first such refusal, then fails with that refusal as any other. That bound holds
        only while the far end refuses for the permit: any other failure meanwhile is retried
        until the row's own give-up time. A refusal that crossed the permit's delivery (the
        permit landed while this attempt was out) is retried at once. The peer stores
        nothing it refuses, and answers a retry of a message it took with the first receipt,
        so the endorsement is recorded there once."""
        now = self.clock()
        reason = far_end_text_for_audit(reason)
        wait = timedelta(seconds=self.settings.outbox_permit_wait_seconds)
        until = claim.permit_wait_until or now + wait
        with self.database.unit_of_work() as session:
            retry_at, bound = self._retry_at(claim, now), min(claim.give_up_at, until)
            if outbox.permit_delivered_during(session, claim):
                retry_at, bound = now, claim.give_up_at  # the permit is there now
            waits = retry_at < bound
            code = outbox.WAITING_FOR_PERMIT if waits else "EPIX-DLV-006"
            gave_up = self._mark_failed(
                session,
                claim,
                code,
                reason,
                now=now,
                retry_at=retry_at if waits else None,
                status=status,
                permit_wait_until=until if waits else None,
            )
        return self._failure_result(claim, gave_up, code, reason)

    def _retry_at(self, claim: Claim, now: datetime, retry_after: float | None = None) -> datetime:
        """When to try a failed row again: the backoff for its attempts, or the far end's
        Retry-After if later, up to the longest delay between attempts."""
        delay = backoff_delay(
            claim.attempts,
            base=self.settings.outbox_base_delay_seconds,
            maximum=self.settings.outbox_max_delay_seconds,
            rng=self.rng,
        )
        wait = min(max(delay, retry_after or 0.0), self.settings.outbox_max_delay_seconds)
        return now + timedelta(seconds=wait)

    def _record_failure(
        self,
        claim: Claim,
        code: str,
        reason: str,
        *,
        now: datetime,
        retry_at: datetime | None,
        status: int | None,
    ) -> Result:
        with self.database.unit_of_work() as session:
            gave_up = self._mark_failed(
                session, claim, code, reason, now=now, retry_at=retry_at, status=status
            )
        return self._failure_result(claim, gave_up, code, reason)

    def _mark_failed(
        self,
        session: Session,
        claim: Claim,
        code: str,
        reason: str,
        *,
        now: datetime,
        retry_at: datetime | None,
        status: int | None,
        permit_wait_until: datetime | None = None,
    ) -> bool:
        """Record the failed attempt and audit it (a final one also tells the sender's
        systems); True when the row is now failed."""
        gave_up = outbox.mark_attempt_failed(
            session,
            claim,
            code=code,
            reason=reason,
            retry_at=retry_at,
            response_status=status,
            now=now,
            permit_wait_until=permit_wait_until,
        )
        if gave_up:
            self._record_give_up(session, claim, code, reason, status)
        else:
            self._audit_failure(
                session,
                claim,
                "webhook.attempt_failed"
                if claim.kind == OutboxKind.WEBHOOK.value
                else "message.delivery_attempt_failed",
                code,
                reason,
                status,
                {"retry_at": retry_at.isoformat() if retry_at else None},
            )
        return gave_up

    @staticmethod
    def _failure_result(claim: Claim, gave_up: bool, code: str, reason: str) -> Result:
        if gave_up:
            log.warning("outbox row %s failed for good: %s %s", claim.id, code, reason)
            return Result.FAILED
        return Result.RETRY

    def _audit_failure(
        self,
        session: Session,
        claim: Claim,
        action: str,
        code: str,
        reason: str,
        status: int | None,
        extra: dict[str, object] | None = None,
    ) -> None:
        """One failed attempt, with the far end's answer (HTTP status, or why there was none)."""
        record_event(
            session,
            action=action,
            outcome=code,
            party=claim.sender_party or None,
            message_id=claim.message_id,
            payload=claim.payload,
            detail={
                "outbox_id": claim.id,
                "kind": claim.kind,
                "to": claim.destination_party,
                "reason": reason,
                "attempts": claim.attempts,
                "response_status": status,
                **(extra or {}),
            },
        )

    def _record_give_up(
        self, session: Session, claim: Claim, code: str, reason: str, status: int | None
    ) -> None:
        """Make a final failure visible: audit it and tell the sender's subscribed systems."""
        webhook = claim.kind == OutboxKind.WEBHOOK.value
        self._audit_failure(
            session,
            claim,
            "webhook.failed" if webhook else "message.delivery_failed",
            code,
            reason,
            status,
        )
        if not webhook and claim.sender_party:
            publish_event(
                session,
                party=claim.sender_party,
                event="delivery.failed",
                event_id=f"{claim.id}.{claim.version}",
                data={
                    "outbox_id": claim.id,
                    "message_id": claim.message_id,
                    "to": claim.destination_party,
                    "kind": claim.kind,
                    "code": code,
                    "reason": reason,
                },
                give_up_seconds=self.settings.outbox_give_up_seconds,
            )


@dataclass
class WorkerHandle:
    """A worker running on a background thread; ``stop()`` ends it cleanly."""

    worker: Worker
    thread: threading.Thread
    stop_event: threading.Event

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_event.set()
        self.thread.join(timeout)
        self.worker.close()

    @property
    def running(self) -> bool:
        return self.thread.is_alive()


def start_worker_thread(
    database: Database, settings: Settings, *, worker: Worker | None = None
) -> WorkerHandle:
    """Run the outbox worker inside this process (``settings.run_worker_in_process``)."""
    worker = worker or default_worker(database, settings)
    stop_event = threading.Event()
    thread = threading.Thread(
        target=worker.run, args=(stop_event,), name="epix-outbox-worker", daemon=True
    )
    thread.start()
    return WorkerHandle(worker, thread, stop_event)


def default_worker(database: Database, settings: Settings) -> Worker:
    """A worker wired to the exchange's inboxes and the registry's node endpoints and keys."""
    return Worker(
        database,
        settings,
        local_inbox=ExchangeInbox(),
        verifier=peers.RegistryReceiptVerifier(),
        directory=peers.RegistryDirectory(),
    )
