"""The node's state for ``/metrics``, read from the database at scrape time.

Every process answers from the same database, so these are right whichever worker process
takes the scrape. Each query is an aggregate over a bounded range of an index (undelivered
outbox rows, unacknowledged inbox entries, the newest checkpoint and registry copy,
certificates ending soon) or a handful of rows (the outbox's running totals); none walks a table
that grows with the node's age (delivered messages, acknowledged entries, the audit trail).

Series naming one Party (``*_by_party``) are only in a scrape by a node administrator or with
``EPIX_METRICS_TOKEN``: they show who trades with whom.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from sqlalchemy.orm import Session

from epix.audit.checkpoints import CheckpointLag, checkpoint_lag
from epix.db import Database
from epix.db.base import utcnow
from epix.delivery.models import OutboxOutcome
from epix.delivery.outbox import Backlog, backlog, totals
from epix.errors import EpixError
from epix.exchange.inbox import Waiting, waiting_by_party
from epix.registry import repository as registry
from epix.registry.anchors import AnchorState, anchor_state, pinned_anchor_pem
from epix.registry.freshness import held_copy_expiry
from epix.registry.models import RegistrySourceCheck
from epix.settings import Settings
from epix.signatures.trust import as_utc

log = logging.getLogger("epix.api.metrics")

EXPIRY_WINDOW = timedelta(days=30)


def _age(now: datetime, then: datetime | None) -> float:
    return max(0.0, (now - then).total_seconds()) if then is not None else 0.0


class NodeCollector:
    """A prometheus_client collector; one per scrape."""

    def __init__(self, database: Database, settings: Settings, *, by_party: bool) -> None:
        self.database = database
        self.settings = settings
        self.by_party = by_party

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "epix_metrics_database_up",
            "1 when the node's state could be read from the database for this scrape.",
        )
        try:
            with self.database.read() as session:
                now = utcnow()
                metrics = [
                    *self._outbox(backlog(session, now=now), totals(session), now),
                    *self._inbox(waiting_by_party(session), now),
                    *self._audit(checkpoint_lag(session), now),
                    *self._registry(
                        registry.current_version(session),
                        registry.newest_document_issued_at(session),
                        held_copy_expiry(session),
                        registry.source_check(session),
                        registry.count_expiring(session, now=now, until=now + EXPIRY_WINDOW),
                        now,
                    ),
                    *self._anchor(self._anchor_state(session), now),
                ]
        except Exception as exc:  # a scrape answers whatever happens; it shows as up == 0
            # At every scrape while it lasts: one line, no traceback, no connection details.
            log.warning("metrics: the node's state could not be read (%s)", type(exc).__name__)
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [up, *metrics]

    def _outbox(
        self, rows: list[Backlog], ever: dict[OutboxOutcome, int], now: datetime
    ) -> Iterable[Metric]:
        messages = GaugeMetricFamily(
            "epix_outbox_messages",
            "Outbox rows not delivered, by state: pending (waiting for their next attempt, "
            "being delivered or due) and failed (given up; resend them).",
            labels=["state"],
        )
        messages.add_metric(["pending"], sum(row.pending for row in rows))
        messages.add_metric(["failed"], sum(row.failed for row in rows))
        due = GaugeMetricFamily(
            "epix_outbox_due_messages",
            "Pending outbox rows whose next attempt has come and that no worker holds.",
        )
        due.add_metric([], sum(row.due for row in rows))
        waiting = GaugeMetricFamily(
            "epix_outbox_waiting_for_permit_messages",
            "Pending endorsement rows the importing Party's node refused because it does not "
            "hold their permit yet (EPIX-DLV-014); sent again until the permit is there, for "
            "EPIX_OUTBOX_PERMIT_WAIT_SECONDS at most.",
        )
        waiting.add_metric([], sum(row.waiting_for_permit for row in rows))
        oldest = GaugeMetricFamily(
            "epix_outbox_oldest_due_age_seconds",
            "How long the outbox row that has waited longest for a worker has been due, "
            "since its next attempt came or a stopped worker's lease ran out (0 when none waits).",
        )
        firsts = [row.longest_due_since for row in rows if row.longest_due_since]
        oldest.add_metric([], _age(now, min(firsts, default=None)))
        outcomes = CounterMetricFamily(
            "epix_outbox_outcomes",
            "Outbox rows ever delivered or given up (outcome label), counted when each is "
            "marked; rate() of delivered is the delivery throughput.",
            labels=["outcome"],
        )
        for outcome in OutboxOutcome:
            outcomes.add_metric([outcome.value], ever.get(outcome, 0))
        yield from (messages, due, waiting, oldest, outcomes)
        if not self.by_party:
            return
        by_party = GaugeMetricFamily(
            "epix_outbox_messages_by_party",
            "Outbox rows not delivered, by destination Party and state (pending, failed).",
            labels=["party", "state"],
        )
        due_by_party = GaugeMetricFamily(
            "epix_outbox_due_messages_by_party",
            "Pending outbox rows waiting for a worker now, by destination Party.",
            labels=["party"],
        )
        for row in rows:
            by_party.add_metric([row.destination_party, "pending"], row.pending)
            by_party.add_metric([row.destination_party, "failed"], row.failed)
            due_by_party.add_metric([row.destination_party], row.due)
        yield from (by_party, due_by_party)

    def _inbox(self, rows: list[Waiting], now: datetime) -> Iterable[Metric]:
        waiting = GaugeMetricFamily(
            "epix_inbox_waiting_messages",
            "Inbox entries not yet acknowledged by their recipient, all Parties together.",
        )
        waiting.add_metric([], sum(row.count for row in rows))
        oldest = GaugeMetricFamily(
            "epix_inbox_oldest_waiting_age_seconds",
            "Age of the oldest inbox entry not yet acknowledged (0 when none waits).",
        )
        firsts = [row.oldest_created_at for row in rows if row.oldest_created_at]
        oldest.add_metric([], _age(now, min(firsts, default=None)))
        yield from (waiting, oldest)
        if not self.by_party:
            return
        by_party = GaugeMetricFamily(
            "epix_inbox_waiting_messages_by_party",
            "Inbox entries not yet acknowledged, by recipient Party.",
            labels=["party"],
        )
        oldest_by_party = GaugeMetricFamily(
            "epix_inbox_oldest_waiting_age_seconds_by_party",
            "Age of a Party's oldest inbox entry not yet acknowledged (0 when none waits).",
            labels=["party"],
        )
        for row in rows:
            by_party.add_metric([row.party], row.count)
            oldest_by_party.add_metric([row.party], _age(now, row.oldest_created_at))
        yield from (by_party, oldest_by_party)

    @staticmethod
    def _audit(lag: CheckpointLag, now: datetime) -> Iterable[Metric]:
        events = CounterMetricFamily(
            "epix_audit_events",
            "Audit events recorded since the node started its trail (the chain head's "
            "sequence; purging old events does not lower it).",
        )
        events.add_metric([], lag.head_sequence)
        unsigned = GaugeMetricFamily(
            "epix_audit_events_since_signed_checkpoint",
            "Audit events after the last node-signed checkpoint (all of them when none is).",
        )
        unsigned.add_metric([], lag.head_sequence - (lag.signed_sequence or 0))
        yield from (events, unsigned)
        if lag.signed_at is not None:
            age = GaugeMetricFamily(
                "epix_audit_signed_checkpoint_age_seconds",
                "Seconds since the last audit checkpoint was signed (absent before the first).",
            )
            age.add_metric([], _age(now, lag.signed_at))
            yield age

    def _anchor_state(self, session: Session) -> AnchorState | None:
        """The registry anchor's rotation state; None when there is none, or the pinned file
        is no single certificate (/readyz and the follower name that)."""
        try:
            return anchor_state(session, pinned_anchor_pem(self.settings.registry_anchor_path))
        except EpixError:
            return None

    @staticmethod
    def _anchor(state: AnchorState | None, now: datetime) -> Iterable[Metric]:
        if state is None:
            return
        anchors = GaugeMetricFamily(
            "epix_registry_anchor",
            "1 for each Secretariat certificate the node knows as its registry anchor: "
            'state="trusted" the one documents are verified with, state="next" the successor '
            "announced to it (fingerprint: the certificate's SHA-256).",
            labels=["state", "fingerprint"],
        )
        expires = GaugeMetricFamily(
            "epix_registry_anchor_expires_in_seconds",
            "Seconds until the registry anchor (trusted) or its announced successor (next) "
            "expires; negative once past. The successor must take over before the trusted "
            "one reaches 0.",
            labels=["state"],
        )
        for name, certificate in (("trusted", state.current), ("next", state.successor)):
            if certificate is not None:
                anchors.add_metric([name, certificate.fingerprint], 1)
                expires.add_metric([name], (certificate.not_after - now).total_seconds())
        yield from (anchors, expires)
        if state.successor_known_since is not None:
            known = GaugeMetricFamily(
                "epix_registry_anchor_next_known_age_seconds",
                "Seconds since this node learnt of the announced successor; it takes over at "
                "the first registry document the successor signs.",
            )
            known.add_metric([], _age(now, state.successor_known_since))
            yield known

    @staticmethod
    def _source_check(check: RegistrySourceCheck, now: datetime) -> Iterable[Metric]:
        last = GaugeMetricFamily(
            "epix_registry_source_check_ok",
            "1 when the follower's last check of its source ended well (a verified document "
            "or 'not modified'); 0 with the code of what went wrong (EPIX-REG-011 unreachable, "
            "EPIX-REG-007 forged, EPIX-REG-008 a rollback, ...).",
            labels=["code"],
        )
        last.add_metric([check.failure_code or ""], 0 if check.failure_code else 1)
        checked = GaugeMetricFamily(
            "epix_registry_source_check_age_seconds",
            "Seconds since the follower last checked its source (EPIX_REGISTRY_REFRESH_SECONDS "
            "apart while it runs).",
        )
        checked.add_metric([], _age(now, check.checked_at))
        yield from (last, checked)
        if check.confirmed_at is not None:
            confirmed = GaugeMetricFamily(
                "epix_registry_copy_confirmed_age_seconds",
                "Seconds since the source last confirmed that the registry copy held is its "
                "newest: how stale the node's last good copy may be.",
            )
            confirmed.add_metric([], _age(now, check.confirmed_at))
            yield confirmed

    def _registry(
        self,
        version_held: int,
        issued_at: datetime | None,
        expires_at: datetime | None,
        check: RegistrySourceCheck | None,
        expiring: tuple[int, int],
        now: datetime,
    ) -> Iterable[Metric]:
        version = GaugeMetricFamily(
            "epix_registry_version", "Version of the key registry the node works from."
        )
        version.add_metric([], version_held)
        yield version
        if issued_at is not None:
            issued = GaugeMetricFamily(
                "epix_registry_copy_issued_age_seconds",
                "Seconds since the Secretariat issued the newest registry document held.",
            )
            issued.add_metric([], _age(now, issued_at))
            yield issued
        if expires_at is not None:
            expires = GaugeMetricFamily(
                "epix_registry_copy_expires_in_seconds",
                "Seconds until the expiry of the newest registry document held (signed, or "
                "EPIX_REGISTRY_VALIDITY_HOURS after its issue for one signed without); "
                "negative once past it (a follower then warns, and after "
                "EPIX_REGISTRY_EXPIRY_GRACE_HOURS refuses signatures).",
            )
            expires.add_metric([], (as_utc(expires_at) - now).total_seconds())
            yield expires
        following = GaugeMetricFamily(
            "epix_registry_following",
            "1 when the node follows a published registry (EPIX_REGISTRY_SOURCE_URL).",
        )
        following.add_metric([], 1 if self.settings.registry_source_url else 0)
        yield following
        if self.settings.registry_source_url and check is not None:
            yield from self._source_check(check, now)
        soon, without_successor = expiring
        ending = GaugeMetricFamily(
            "epix_registry_certificates_expiring",
            'Unrevoked registry certificates ending within 30 days; successor="no" when '
            "their authority has no unrevoked certificate ending later.",
            labels=["successor"],
        )
        ending.add_metric(["yes"], soon - without_successor)
        ending.add_metric(["no"], without_successor)
        yield ending
