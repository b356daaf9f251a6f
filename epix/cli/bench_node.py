"""``epix bench node``: HTTP end-to-end submissions against the in-process pipeline.

A fresh demo node (own data directory, SQLite unless EPIX_DATABASE_URL says otherwise) is
started under uvicorn on loopback. Permits are signed up front, so the measurement is the node's
work: parse, schema, rules, signature, store, receipt.

The load generator shares the machine's cores with the node, so it is lean: one event loop,
``clients`` keep-alive HTTP/1.1 connections on asyncio streams, no HTTP library. It runs closed
(each connection sends its next submission when the last is answered) or, with ``--rate``,
paced: every submission has an intended start on a fixed schedule and its latency counts from
there, so time spent queueing behind a slow answer is measured (no coordinated omission).
With ``--workers N`` the connections are spread evenly over the node's processes, as a
least-connections load balancer would spread them.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

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
def _node(data_dir: Path, workers: int) -> Iterator[str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "EPIX_DATA_DIR": str(data_dir), "EPIX_NODE_BASE_URL": url}
    server = subprocess.Popen(
        [sys.executable, "-m", "epix.cli", "serve", "--port", str(port), "--workers", str(workers)],
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


class _Connection:
    """One keep-alive HTTP/1.1 connection: write a request, read the status line, the headers
    and exactly Content-Length bytes (the node never answers these requests chunked)."""

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def send(self, request: bytes) -> tuple[int, bytes]:
        reused = self._streams is not None
        try:
            return await self._exchange(request)
        except (asyncio.IncompleteReadError, ConnectionError):
            if not reused:
                raise
        # The node closed an idle keep-alive connection before reading this request: resend.
        self.close()
        return await self._exchange(request)

    async def _exchange(self, request: bytes) -> tuple[int, bytes]:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self._host, self._port)
        reader, writer = self._streams
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length, close = 0, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                raise click.ClickException(f"unexpected Transfer-Encoding: {value.decode()}")
            elif name == b"connection":
                close = value.strip().lower() == b"close"
        body = await reader.readexactly(length)
        if close:
            self.close()
        return int(head[9:12]), body

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


@dataclass(frozen=True)
class _Run:
    """What one drive measured: accepted submissions/s over the run, latencies (s), the load
    generator's own CPU time per request (s) and connections per node process."""

    rate: float
    latencies: list[float]
    cpu_per_request: float
    split: list[int]


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (uvicorn[standard] brings it): every bit of CPU the load
    generator saves is left to the node it shares the cores with."""
    try:
        import uvloop
    except ImportError:  # platforms without uvloop
        return None
    return uvloop.new_event_loop


def _drive(
    url: str,
    api_key: str,
    permits: list[bytes],
    clients: int,
    rate: float | None = None,
    workers: int = 1,
) -> _Run:
    """Submit every permit over ``clients`` connections, closed loop or paced at ``rate``/s."""
    cpu = time.process_time()
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        accepted, latencies, wall, split = runner.run(
            _submit_all(url, api_key, permits, clients, rate, workers)
        )
    cpu = time.process_time() - cpu
    return _Run(accepted / wall, latencies, cpu / len(permits), split)


async def _submit_all(
    url: str, api_key: str, permits: list[bytes], clients: int, rate: float | None, workers: int
) -> tuple[int, list[float], float, list[int]]:
    parts = urlsplit(url)
    head = (
        f"POST /v1/messages HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {api_key}\r\nContent-Type: application/xml\r\n"
        "X-EPIX-From: XA\r\nX-EPIX-To: XB\r\n"
    ).encode()
    latencies: list[float] = []
    failures: list[str] = []
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    connections = [_Connection(host, port) for _ in range(clients)]
    split: list[int] = []

    async def submit_one(connection: _Connection, body: bytes, started: float) -> None:
        request = b"%bX-EPIX-Message-Id: bench-%b\r\nContent-Length: %d\r\n\r\n%b" % (
            head,
            uuid.uuid4().hex.encode(),
            len(body),
            body,
        )
        async with asyncio.timeout(60):
            status, answer = await connection.send(request)
        if status == 201:
            latencies.append(time.perf_counter() - started)
        else:
            failures.append(f"{status} {answer[:200].decode(errors='replace')}")

    queue = iter(permits)

    async def closed(connection: _Connection) -> None:
        for body in queue:
            await submit_one(connection, body, time.perf_counter())

    async def paced(connection: _Connection, first: int, start: float, rate: float) -> None:
        for index in range(first, len(permits), clients):
            intended = start + index / rate
            await asyncio.sleep(intended - time.perf_counter())
            await submit_one(connection, permits[index], intended)

    try:
        split = await _spread(connections, parts.netloc, workers)
        started = time.perf_counter()
        if rate is None:
            await asyncio.gather(*(closed(connection) for connection in connections))
        else:
            await asyncio.gather(
                *(paced(c, index, started, rate) for index, c in enumerate(connections))
            )
    finally:
        for connection in connections:
            connection.close()
    wall = time.perf_counter() - started
    if failures:
        raise click.ClickException(f"{len(failures)} submissions failed, e.g. {failures[0]}")
    return len(latencies), latencies, wall, split


async def _spread(connections: list[_Connection], netloc: str, workers: int) -> list[int]:
    """Connect each connection to a worker process that has fewer than its share, as a
    least-connections load balancer in front of the node would; return connections per process.

    The node's processes share one listening socket and the kernel hands each new connection to
    whichever process accepts first: 32 connections opened in a row were measured landing 25/7,
    and the process with 25 answered at 3.4x the latency of the other. ``/healthz`` says which
    process answered; a connection to a process that has its share is closed and opened again.
    """
    share = -(-len(connections) // workers)
    per_process: dict[str, int] = {}
    probe = f"GET /healthz HTTP/1.1\r\nHost: {netloc}\r\n\r\n".encode()
    attempts = 50 * len(connections)
    for connection in connections:
        while True:
            status, answer = await connection.send(probe)
            if status != 200:
                raise click.ClickException(f"the node is not healthy: {status} {answer[:200]!r}")
            process = str(json.loads(answer).get("process"))
            attempts -= 1
            if per_process.get(process, 0) < share or attempts <= 0:
                per_process[process] = per_process.get(process, 0) + 1
                break
            connection.close()
    return sorted(per_process.values(), reverse=True)


# The node runs as it is deployed: one process per core (the GIL keeps a process on one core).
_DEFAULT_WORKERS = max(1, min(os.cpu_count() or 1, 8))


@click.command("node")
@click.option("--count", default=1000, show_default=True, help="HTTP submissions.")
@click.option(
    "--baseline-count",
    default=300,
    show_default=True,
    type=click.IntRange(min=2),
    help="In-process submissions for the baseline (half before, half after the HTTP run).",
)
@click.option("--clients", default=32, show_default=True, help="Concurrent HTTP connections.")
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    help="Offered submissions/s, spread evenly over the connections (default: closed loop).",
)
@click.option(
    "--workers",
    default=_DEFAULT_WORKERS,
    show_default="one per CPU core, at most 8",
    type=click.IntRange(1, 64),
    help="Worker processes of the node (epix serve --workers), as a node is deployed.",
)
@click.option("--lines", default=6, show_default=True, help="Permit lines (6 is about 10 KB).")
def node(
    count: int, baseline_count: int, clients: int, rate: float | None, workers: int, lines: int
) -> None:
    """Accepted submissions/s and p50/p99 latency over loopback, and the ratio per worker
    process to the in-process pipeline measured in the same run (target >= 0.5, p99 < 100 ms
    on SQLite)."""
    with tempfile.TemporaryDirectory(prefix="epix-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        settings = Settings(data_dir=data_dir, database_url=os.environ.get("EPIX_DATABASE_URL"))
        database = Database(settings.effective_database_url)
        database.migrate()
        setup = bootstrap_demo(database, settings)
        click.echo(f"signing {baseline_count + count} permits of {lines} lines ...")
        permits = _signed_permits(setup, baseline_count + count, lines)
        # Half the in-process baseline runs before the HTTP run and half after, so a machine
        # that speeds up or slows down during the run moves both sides of the ratio alike.
        half = baseline_count // 2
        before = _in_process_rate(database, settings, permits[:half])
        database.dispose()
        with _node(data_dir, workers) as url:
            api_key = setup.api_key("XA", MANAGEMENT_AUTHORITY)
            warm_up = permits[baseline_count : baseline_count + 20 * workers]
            _drive(url, api_key, warm_up, 4 * workers, workers=workers)
            measured = permits[baseline_count + len(warm_up) :]
            run = _drive(url, api_key, measured, clients, rate, workers=workers)
        database = Database(settings.effective_database_url)
        after = _in_process_rate(database, settings, permits[half:baseline_count])
        database.dispose()
        baseline = (before + after) / 2
        click.echo(
            f"in-process pipeline: {baseline:8.1f} submissions/s (1 thread; "
            f"{before:.1f} before and {after:.1f} after the HTTP run)"
        )
    quantiles = statistics.quantiles(run.latencies, n=100)
    p50, p99 = quantiles[49] * 1000, quantiles[98] * 1000
    click.echo(
        f"HTTP end-to-end:     {run.rate:8.1f} accepted submissions/s "
        f"({clients} clients, {workers} worker(s), {len(run.latencies)} submissions)"
    )
    if workers > 1:
        click.echo(f"connections per worker process: {run.split}")
    if rate is None:
        click.echo(f"latency:             p50 {p50:.1f} ms, p99 {p99:.1f} ms (target p99 < 100 ms)")
        # Each client sends its next submission when the last is answered (a closed loop), so
        # by Little's law the mean latency is clients / rate: the p99 target is a throughput
        # target.
        click.echo(
            f"closed loop:         mean latency = clients / rate = "
            f"{clients / run.rate * 1000:.0f} ms; p99 < 100 ms at {clients} clients needs "
            f"> {clients / 0.1:.0f} submissions/s"
        )
        # The in-process baseline is one thread on one core; each worker process has one too.
        click.echo(
            f"ratio HTTP / in-process: {run.rate / baseline:.2f} with {workers} worker(s), "
            f"{run.rate / workers / baseline:.2f} per worker process (target >= 0.5)"
        )
    else:
        click.echo(
            f"latency:             p50 {p50:.1f} ms, p99 {p99:.1f} ms from each intended start "
            f"(target p99 < 100 ms)"
        )
        click.echo(f"paced:               offered {rate:.1f}/s, achieved {run.rate:.1f}/s")
    click.echo(f"load generator CPU per request: {run.cpu_per_request * 1000:.2f} ms")
