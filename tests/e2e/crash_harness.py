"""Two real ``epix serve`` nodes that a test can kill with SIGKILL and start again, each behind
a small TCP proxy on the port the registry publishes, which can hold, cut or answer a peer's
``POST /v1/messages`` at the exact moment a crash test needs.

The proxy speaks just enough HTTP/1.1 to find one request's head and body; it adds
``Connection: close`` so every request has its own connection, and it never changes a byte of
what the nodes say to each other otherwise.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

import httpx

from epix.cli.two_nodes import Node, TwoNodes, free_port, node_environment
from tests.conftest import REPO_ROOT

Action = Literal["pass", "drop", "half_body", "hold_answer", "hold_request", "answer"]


@dataclass(frozen=True, slots=True)
class Seen:
    """One peer message as the proxy saw it arrive."""

    document_type: str
    message_id: str


@dataclass
class Rule:
    """What to do with the next peer message matching ``document_type`` (None: any)."""

    action: Action
    document_type: str | None = None
    status: int = 200  # for "answer"
    body: bytes = b""  # for "answer"
    times: int = 1  # how many matching messages it applies to (0: every one)
    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    used: int = 0
    retired: bool = False  # set to let later messages pass again

    def applies_to(self, seen: Seen) -> bool:
        return (
            not self.retired
            and self.document_type in (None, seen.document_type)
            and (self.times == 0 or self.used < self.times)
        )


class Proxy:
    """Forwards ``listen_port`` to ``target_port`` on loopback, applying ``rules`` in order."""

    def __init__(self, listen_port: int, target_port: int) -> None:
        self.listen_port = listen_port
        self.target_port = target_port
        self.rules: list[Rule] = []
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> Proxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.listen_port)

    def stop(self) -> None:
        for rule in self.rules:
            rule.release.set()

        async def close() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def reset(self) -> None:
        """Forget the rules and what was seen (between tests sharing the nodes)."""
        with self._lock:
            for rule in self.rules:
                rule.release.set()
            self.rules.clear()
            self.seen.clear()

    def messages(self, document_type: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if document_type in (None, s.document_type)]

    def _rule_for(self, seen: Seen) -> Rule | None:
        with self._lock:
            self.seen.append(seen)
            for rule in self.rules:
                if rule.applies_to(seen):
                    rule.used += 1
                    return rule
        return None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._one_request(reader, writer)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:] if line)
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        kept = [line for line in lines[1:] if line and not line.lower().startswith("connection:")]
        upstream_head = "\r\n".join([lines[0], *kept, "Connection: close", "", ""]).encode()
        rule: Rule | None = None
        if lines[0].startswith("POST /v1/messages"):
            seen = Seen(
                headers.get("x-epix-document-type", "permit"),
                headers.get("x-epix-message-id", ""),
            )
            rule = self._rule_for(seen)
        action: Action = rule.action if rule is not None else "pass"
        if rule is not None and action == "answer":
            writer.write(
                f"HTTP/1.1 {rule.status} X\r\nContent-Type: application/xml\r\n"
                f"Content-Length: {len(rule.body)}\r\nConnection: close\r\n\r\n".encode()
                + rule.body
            )
            await writer.drain()
            rule.reached.set()
            return
        if rule is not None and action == "drop":
            rule.reached.set()
            return
        if rule is not None and action == "hold_request":
            rule.reached.set()
            await asyncio.to_thread(rule.release.wait, 30)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        try:
            if rule is not None and action == "half_body":
                up_writer.write(upstream_head + body[: len(body) // 2])
                await up_writer.drain()
                rule.reached.set()
                await asyncio.to_thread(rule.release.wait, 30)
                return
            up_writer.write(upstream_head + body)
            await up_writer.drain()
            answer = await up_reader.read()
            if rule is not None and action == "hold_answer":
                rule.reached.set()  # the receiver has answered: it committed
                await asyncio.to_thread(rule.release.wait, 30)
                return  # the sender never gets the answer
            writer.write(answer)
            await writer.drain()
        finally:
            up_writer.close()


@dataclass
class ServedNode:
    """One node's ``epix serve`` process on a private port, behind its proxy."""

    node: Node
    port: int
    log_path: Path
    extra_env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """The node itself (tests talk to it directly, not through its proxy)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "epix.cli", "serve", "--port", str(self.port)],
            cwd=REPO_ROOT,
            env=node_environment(self.node) | self.extra_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_until(f"node {self.node.party} to answer", self._ready, timeout)

    def _ready(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.log()
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, no lease given back."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self._close_log()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def wait_until(what: str, check: Callable[[], bool], timeout: float) -> None:
    """Poll ``check`` (a node not answering yet counts as False) until true or ``timeout``."""
    deadline = time.monotonic() + timeout
    while not _holds(check):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def _holds(check: Callable[[], bool]) -> bool:
    try:
        return check()
    except httpx.TransportError:
        return False


@dataclass
class Cluster:
    nodes: TwoNodes
    a: ServedNode
    b: ServedNode
    proxy_a: Proxy
    proxy_b: Proxy


@contextmanager
def cluster(nodes: TwoNodes, extra_env: dict[str, str] | None = None) -> Iterator[Cluster]:
    """Both nodes started, each behind a proxy at the address the registry publishes."""
    env = {
        "EPIX_OUTBOX_LEASE_SECONDS": "4",
        "EPIX_OUTBOUND_DEADLINE_SECONDS": "3",
        "EPIX_OUTBOX_HTTP_TIMEOUT_SECONDS": "3",
        "EPIX_OUTBOX_BASE_DELAY_SECONDS": "0.2",
        "EPIX_OUTBOX_MAX_DELAY_SECONDS": "1",
        "EPIX_OUTBOX_POLL_SECONDS": "0.1",
        "EPIX_OUTBOX_CIRCUIT_FAILURES": "50",
    } | (extra_env or {})
    served = [
        ServedNode(node, free_port(), node.data_dir / "serve.log", env)
        for node in (nodes.a, nodes.b)
    ]
    proxies = [Proxy(node.node.port, node.port).start() for node in served]
    try:
        for node in served:
            node.start()
        wait_until(
            "node B to hold the registry node A publishes",
            lambda: httpx.get(f"{served[1].url}/v1/registry", timeout=2).status_code == 200,
            60,
        )
        yield Cluster(nodes, served[0], served[1], proxies[0], proxies[1])
    finally:
        for node in served:
            node.stop()
        for proxy in proxies:
            proxy.stop()
