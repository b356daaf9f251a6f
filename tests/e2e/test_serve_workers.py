"""``epix serve --workers 2`` keeps a worker process that is slow to answer its supervisor.

uvicorn's supervisor pings each worker process every half second and, by default, kills one
that has not answered within 5 s, with whatever requests it was serving. A worker starved of
CPU for a few seconds (a loaded host, a neighbour on a shared VM, a long garbage collection)
is not hung; killing it turns a slow moment into failed requests.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO_ROOT

STARVED_SECONDS = 12.0  # over uvicorn's default 5 s, under the node's 30 s


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    return stat.split(") ", 1)[1][0] != "Z"  # a zombie was killed, not reaped yet


@pytest.mark.slow
def test_a_worker_process_stalled_for_seconds_is_not_killed(tmp_path: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "EPIX_DATA_DIR": str(tmp_path / "data")}
    env.pop("EPIX_DATABASE_URL", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "epix.cli", "serve", "--port", str(port), "--workers", "2"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    stalled: int | None = None
    try:
        deadline = time.monotonic() + 180  # two processes importing on a busy machine
        while stalled is None:
            assert time.monotonic() < deadline, "the node did not start"
            try:
                stalled = int(httpx.get(f"{url}/healthz", timeout=1).json()["process"])
            except httpx.TransportError:
                time.sleep(0.2)
        os.kill(stalled, signal.SIGSTOP)  # as if it got no CPU at all
        time.sleep(STARVED_SECONDS)
        os.kill(stalled, signal.SIGCONT)
        time.sleep(1.0)
        assert _alive(stalled), "the supervisor killed the stalled worker"
    finally:
        if stalled is not None and _alive(stalled):
            os.kill(stalled, signal.SIGCONT)
        server.terminate()
        output = server.communicate(timeout=60)[0].decode()
    assert "died" not in output, output
