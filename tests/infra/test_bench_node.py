"""The load generator of ``epix bench node``: every permit submitted once over kept-alive
connections, closed or paced, and a refused submission aborts the run with its answer."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import click
import pytest

from epix.cli.bench_node import _drive


class _Node(ThreadingHTTPServer):
    daemon_threads = True
    close_after_answer = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies: list[bytes] = []
        self.message_ids: set[str] = set()
        self.connections = 0
        self.guard = threading.Lock()
        # Which worker process answers the n-th connection (1-based): one process by default.
        self.process_of: Callable[[int], str] = lambda _number: "1"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Node

    def setup(self) -> None:
        super().setup()
        with self.server.guard:
            self.server.connections += 1
            self.number = self.server.connections

    def do_GET(self) -> None:
        answer = json.dumps({"status": "ok", "process": self.server.process_of(self.number)})
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer.encode())
        self.close_connection = self.server.close_after_answer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.guard:
            self.server.bodies.append(body)
            self.server.message_ids.add(self.headers["X-EPIX-Message-Id"])
        ok = body != b"bad" and self.headers["Authorization"] == "Bearer key"
        answer = b"receipt" if ok else b'{"code": "EPIX-TEST-001"}'
        self.send_response(201 if ok else 422)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
        # Closing without a "Connection: close" header is what an idle keep-alive timeout does.
        self.close_connection = self.server.close_after_answer

    def log_message(self, *_args: object) -> None:
        pass


@contextmanager
def _node(*, close_after_answer: bool = False) -> Iterator[tuple[str, _Node]]:
    server = _Node()
    server.close_after_answer = close_after_answer
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()


PERMITS = [f"permit {index}".encode() for index in range(40)]


def test_every_permit_is_submitted_once_over_kept_alive_connections() -> None:
    with _node() as (url, server):
        run = _drive(url, "key", PERMITS, 4)
    assert sorted(server.bodies) == sorted(PERMITS)
    assert len(server.message_ids) == len(PERMITS)
    assert server.connections == 4
    assert len(run.latencies) == len(PERMITS)


def test_paced_submissions_keep_to_their_connections() -> None:
    with _node() as (url, server):
        run = _drive(url, "key", PERMITS, 4, rate=2000)
    assert sorted(server.bodies) == sorted(PERMITS)
    assert server.connections == 4
    assert len(run.latencies) == len(PERMITS)


def test_a_connection_the_node_closed_is_opened_again() -> None:
    with _node(close_after_answer=True) as (url, server):
        _drive(url, "key", PERMITS[:10], 2)
    assert sorted(server.bodies) == sorted(PERMITS[:10])
    assert server.connections == 12  # the first request of each opens it, then each answer


def test_a_refused_submission_aborts_the_run_with_its_answer() -> None:
    with _node() as (url, _server), pytest.raises(click.ClickException) as refused:
        _drive(url, "key", [*PERMITS[:5], b"bad"], 2)
    assert refused.value.message == '1 submissions failed, e.g. 422 {"code": "EPIX-TEST-001"}'


def test_connections_are_spread_evenly_over_the_node_processes() -> None:
    # As the kernel does with connections opened in a row: the first ones all land on one
    # process. Connections to a process that has its share are closed and opened again.
    with _node() as (url, server):
        server.process_of = lambda number: "A" if number <= 5 or number % 2 else "B"
        run = _drive(url, "key", PERMITS, 4, workers=2)
    assert run.split == [2, 2]
    assert server.connections == 8  # A, A, three refused A, B, one refused A, B
    assert sorted(server.bodies) == sorted(PERMITS)
