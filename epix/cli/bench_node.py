"""``epix bench node``: HTTP end-to-end submissions against the in-process pipeline.

A fresh demo node (own data directory, SQLite unless EPIX_DATABASE_URL says otherwise) is
started under uvicorn on loopback, or ``--url`` targets a running demo node. Permits are signed
up front, so the measurement is the node's work: parse, schema, rules, signature, store, receipt.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import httpx

from epix.auth.principal import Principal, Role
from epix.db import Database
from epix.exchange.demo import DemoSetup, bootstrap_demo
from epix.exchange.envelope import Envelope
from epix.exchange.node_identity import node_identity
from epix.exchange.service import submit
from epix.permits.samples import demo_permit
from epix.permits.writer import write_permit
from epix.registry.roles import MANAGEMENT_AUTHORITY
from epix.settings import Settings
from epix.signatures.sign import sign_document


def _signed_permits(setup: DemoSetup, count: int, lines: int) -> list[bytes]:
    key_pem, cert_pem = setup.signing_identity("XA")
    run = uuid.uuid4().hex[:6]
    return [
        sign_document(
            write_permit(demo_permit(number=f"XA-B{run}-{index:06d}", lines=lines)),
            key_pem,
            cert_pem,
        )
        for index in range(count)
    ]


def _in_process_rate(database: Database, settings: Settings, permits: list[bytes]) -> float:
    """Submissions per second through ``exchange.service.submit`` on one thread."""
    principal = Principal(
        0, "bench", "XA", "XA Management Authority (DEMO)", frozenset({Role.MANAGEMENT_AUTHORITY})
    )
    identity = node_identity(settings.data_dir, settings.node_party)
    started = time.perf_counter()
    for body in permits:
        result = submit(
            database,
            envelope=Envelope(f"inproc-{uuid.uuid4().hex}", "XA", "XB", "permit"),
            body=body,
            principal=principal,
            settings=settings,
            identity=identity,
        )
        if not result.accepted:
            raise click.ClickException(f"in-process submission refused: {result.findings}")
    return len(permits) / (time.perf_counter() - started)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def _node(data_dir: Path) -> Iterator[str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "EPIX_DATA_DIR": str(data_dir), "EPIX_NODE_BASE_URL": url}
    server = subprocess.Popen(
        [sys.executable, "-m", "epix.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise click.ClickException("the node did not start")
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(30)


def _drive(url: str, api_key: str, permits: list[bytes], clients: int) -> tuple[float, list[float]]:
    """Submit every permit from ``clients`` concurrent connections; rate and latencies (s)."""
    latencies: list[float] = []
    failures: list[str] = []
    queue = iter(permits)
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            while True:
                with lock:
                    body = next(queue, None)
                if body is None:
                    return
                started = time.perf_counter()
                response = http.post(
                    "/v1/messages",
                    content=body,
                    headers={
                        "Authorization": f"Bearer {api_key}",
                        "Content-Type": "application/xml",
                        "X-EPIX-Message-Id": f"bench-{uuid.uuid4().hex}",
                        "X-EPIX-From": "XA",
                        "X-EPIX-To": "XB",
                    },
                )
                elapsed = time.perf_counter() - started
                with lock:
                    if response.status_code == 201:
                        latencies.append(elapsed)
                    else:
                        failures.append(f"{response.status_code} {response.text[:200]}")

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if failures:
        raise click.ClickException(f"{len(failures)} submissions failed, e.g. {failures[0]}")
    return len(latencies) / wall, latencies


@click.command("node")
@click.option("--count", default=1000, show_default=True, help="HTTP submissions.")
@click.option(
    "--baseline-count",
    default=300,
    show_default=True,
    help="In-process submissions for the baseline.",
)
@click.option("--clients", default=32, show_default=True, help="Concurrent HTTP clients.")
@click.option("--lines", default=6, show_default=True, help="Permit lines (6 is about 10 KB).")
def node(count: int, baseline_count: int, clients: int, lines: int) -> None:
    """Accepted submissions/s and p50/p99 latency over loopback, and the ratio to the
    in-process pipeline measured in the same run (target >= 0.5, p99 < 100 ms on SQLite)."""
    with tempfile.TemporaryDirectory(prefix="epix-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        settings = Settings(data_dir=data_dir, database_url=os.environ.get("EPIX_DATABASE_URL"))
        database = Database(settings.effective_database_url)
        database.migrate()
        setup = bootstrap_demo(database, settings)
        click.echo(f"signing {baseline_count + count} permits of {lines} lines ...")
        permits = _signed_permits(setup, baseline_count + count, lines)
        baseline = _in_process_rate(database, settings, permits[:baseline_count])
        database.dispose()
        click.echo(f"in-process pipeline: {baseline:8.1f} submissions/s (1 thread)")
        with _node(data_dir) as url:
            api_key = setup.api_key("XA", MANAGEMENT_AUTHORITY)
            _drive(url, api_key, permits[baseline_count : baseline_count + 20], 4)  # warm-up
            rate, latencies = _drive(url, api_key, permits[baseline_count + 20 :], clients)
    quantiles = statistics.quantiles(latencies, n=100)
    p50, p99 = quantiles[49] * 1000, quantiles[98] * 1000
    click.echo(
        f"HTTP end-to-end:     {rate:8.1f} accepted submissions/s "
        f"({clients} clients, {len(latencies)} submissions)"
    )
    click.echo(f"latency:             p50 {p50:.1f} ms, p99 {p99:.1f} ms (target p99 < 100 ms)")
    # Each client sends its next submission when the last is answered (a closed loop), so by
    # Little's law the mean latency is clients / rate: the p99 target is a throughput target.
    click.echo(
        f"closed loop:         mean latency = clients / rate = {clients / rate * 1000:.0f} ms; "
        f"p99 < 100 ms at {clients} clients needs > {clients / 0.1:.0f} submissions/s"
    )
    click.echo(f"ratio HTTP / in-process: {rate / baseline:.2f} (target >= 0.5)")
