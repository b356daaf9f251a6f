"""``/metrics`` for Prometheus: the web processes' counters (HTTP requests per route template,
submissions by outcome) and the node's state read from the database (``epix.api.node_metrics``).

``epix serve --workers N`` runs N processes behind one socket, and a scrape is answered by
whichever process takes the connection. So that every answer is the node's total, the worker
processes keep their counters in prometheus_client's multiprocess files (one file per process
under ``<data dir>/metrics``, which ``epix serve`` empties at start) and a scrape adds them up.
The files of a process that exited stay: its counts are part of the node's totals, and the
totals would go backwards without them. No live gauge is kept in these files (the node's state
comes from the database at scrape time, ``epix.api.node_metrics``), so there is nothing for
``mark_process_dead`` to remove when a worker exits. A single process (tests, ``--workers 1``)
keeps its counters in memory, in a registry of its own app.
"""

from __future__ import annotations

import hmac
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from epix.api.deps import DatabaseDep, SettingsDep
from epix.api.node_metrics import NodeCollector
from epix.api.problems import deciding_finding
from epix.api.security import get_current_principal, presented_api_key
from epix.auth.principal import Role
from epix.auth.scoping import ensure_role
from epix.db import Database
from epix.errors import Finding
from epix.settings import Settings

# prometheus_client's switch: set before a process creates its first metric, its metrics are
# written to files in this directory. epix serve sets it for the worker processes it starts.
MULTIPROCESS_DIRECTORY_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def reset_multiprocess_directory(data_dir: Path) -> Path:
    """An empty ``<data dir>/metrics`` for the worker processes about to start (``epix serve``).

    Files left by an earlier run would add its counts to this one's, so a directory that
    cannot be emptied is an error (``OSError``), not a reason to go on.
    """
    directory = (data_dir / "metrics").resolve()
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(mode=0o700, parents=True)  # owner-only, like the rest of the data directory
    return directory


def _shared_directory() -> str | None:
    """The directory this process's metrics are written to, or None when they are in memory.

    prometheus_client decides once, when it is first imported; the variable alone may have been
    set after that (``epix serve --workers 1`` serves from the process that set it).
    """
    if not getattr(values.ValueClass, "_multiprocess", False):
        return None
    return os.environ.get(MULTIPROCESS_DIRECTORY_VARIABLE)


class _Together:
    """Several collectors read as one, for one scrape."""

    def __init__(self, *collectors: Collector) -> None:
        self.collectors = collectors

    def collect(self) -> Iterable[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


class Metrics:
    """The app's counters. One registry per app, so several apps in one process (tests) never
    collide; in multiprocess mode the counts live in the shared files instead."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "epix_http_requests_total",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "epix_http_request_seconds",
            "HTTP request latency by method and route template.",
            ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.submissions = Counter(
            "epix_submissions_total",
            "Documents submitted to POST /v1/messages by outcome (accepted, "
            "accepted_with_warnings, rejected: refused with a signed receipt, refused: refused "
            "before the pipeline, e.g. authentication, or with the database out) and the code "
            "that decided a refusal.",
            ["outcome", "code"],
            registry=self.registry,
        )
        self.shared_directory = _shared_directory()

    def count_submission(self, outcome: str, refusal: Sequence[Finding] = ()) -> None:
        code = deciding_finding(refusal).code if refusal else ""
        self.submissions.labels(outcome, code).inc()

    def counters(self) -> Collector:
        """Every process's counts when they are shared, else this app's."""
        if self.shared_directory is None:
            return self.registry
        shared = CollectorRegistry()
        MultiProcessCollector(shared, path=self.shared_directory)  # type: ignore[no-untyped-call]
        return shared

    def scrape(self, *more: Collector) -> Collector:
        return _Together(self.counters(), *more)


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    @staticmethod
    def _route_template(scope: Scope) -> str:
        # The router records the matched route in the scope; label by its template, not the
        # raw path, so permit numbers never become label values.
        route = scope.get("route")
        return str(getattr(route, "path", None) or "unmatched")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(str(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = self._route_template(scope)
            method = scope.get("method", "GET")
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)


def _may_see_parties(request: Request, database: Database, settings: Settings) -> bool:
    """Whether this scrape may include series naming Parties (who trades with whom).

    Without a credential it may not. ``Authorization: Bearer <EPIX_METRICS_TOKEN>`` or a node
    administrator's API key may; any other credential is refused (401/403), not quietly
    answered with less, so a scraper with a wrong token fails loudly.
    """
    if settings.metrics_token is not None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        presented = value.strip().encode()
        if scheme.lower() == "bearer" and hmac.compare_digest(
            presented, settings.metrics_token.encode()
        ):
            return True
    if presented_api_key(request) is None:
        return False
    ensure_role(get_current_principal(request, database), Role.NODE_ADMIN)
    return True


router = APIRouter(include_in_schema=False)


@router.get("/metrics")
def metrics_endpoint(request: Request, database: DatabaseDep, settings: SettingsDep) -> Response:
    """Prometheus text format; see "Monitoring" in docs/architecture.md for every series."""
    metrics: Metrics = request.app.state.metrics
    by_party = _may_see_parties(request, database, settings)
    scrape = metrics.scrape(NodeCollector(database, settings, by_party=by_party))
    return Response(generate_latest(scrape), media_type=CONTENT_TYPE_LATEST)
