"""A real ``epix`` process on loopback for the node-lifecycle tests (serve, backup, audit)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx

from tests.conftest import REPO_ROOT

# A request that writes on any node, with nothing set up: a refused login is audited.
FAILED_LOGIN = {"username": "nobody", "password": "wrong"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def node_env(data_dir: Path, database_url: str | None = None) -> dict[str, str]:
    """The environment of a node on ``data_dir``: its embedded SQLite database unless a URL is
    given; the outbox worker stays off so that nothing is delivered meanwhile."""
    env = {**os.environ, "EPIX_DATA_DIR": str(data_dir), "EPIX_RUN_WORKER_IN_PROCESS": "false"}
    env.pop("EPIX_DATABASE_URL", None)
    if database_url is not None:
        env["EPIX_DATABASE_URL"] = database_url
    return env


def epix(
    data_dir: Path,
    *args: str,
    database_url: str | None = None,
    extra_env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "epix.cli", *args],
        cwd=REPO_ROOT,
        env={**node_env(data_dir, database_url), **(extra_env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def written_so_far(file: IO[bytes]) -> bytes:
    """What a running process wrote so far into ``file``. pread: the process shares the file's
    offset, and a seek here would make it write over what it wrote before."""
    descriptor = file.fileno()
    return os.pread(descriptor, os.fstat(descriptor).st_size, 0)


class Node:
    """A running ``epix serve``: its URL, what it printed so far (``printed``), and once
    stopped, everything it printed (``output``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.output = ""
        self.pid = 0
        self.returncode: int | None = None
        self.printed: Callable[[], str] = lambda: self.output


@contextmanager
def running_node(
    data_dir: Path,
    *flags: str,
    database_url: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Node]:
    port = free_port()
    node = Node(f"http://127.0.0.1:{port}")
    # Into a file, not a pipe: nobody reads a pipe while the node runs, and once its 64 KiB
    # buffer is full of access log lines the node blocks on its next log line (a test that
    # submitted ~900 permits saw every request hang).
    with tempfile.TemporaryFile() as printed:
        server = subprocess.Popen(
            [sys.executable, "-m", "epix.cli", "serve", "--port", str(port), *flags],
            cwd=REPO_ROOT,
            env={**node_env(data_dir, database_url), **(extra_env or {})},
            stdout=printed,
            stderr=subprocess.STDOUT,
        )
        node.pid = server.pid

        def output() -> str:
            return written_so_far(printed).decode(errors="replace")

        node.printed = output
        try:
            deadline = time.monotonic() + 60
            while True:
                assert server.poll() is None, output()
                try:
                    if httpx.get(f"{node.url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the node did not start"
                time.sleep(0.2)
            yield node
        finally:
            server.terminate()
            node.returncode = server.wait(timeout=30)
            node.output = output()
