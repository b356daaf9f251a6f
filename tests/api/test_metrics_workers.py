"""``/metrics`` of a real ``epix serve --workers 2``: whichever process answers a scrape, the
HTTP counters are the node's, not that process's share."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from tests.conftest import REPO_ROOT

HEALTHZ_SERIES = 'epix_http_requests_total{method="GET",route="/healthz",status="200"}'
REFUSED_SERIES = 'epix_submissions_total{code="EPIX-AUTH-001",outcome="refused"}'


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _scraped(text: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@pytest.fixture
def two_worker_node(tmp_path: Path) -> Iterator[str]:
    data_dir = tmp_path / "data"
    # What a previous run left: epix serve must start the counters from nothing.
    stale = data_dir / "metrics"
    stale.mkdir(parents=True)
    left_over = MmapedDict(str(stale / "counter_1.db"))
    labels = ["method", "route", "status"]
    key = mmap_key(
        "epix_http_requests", "epix_http_requests_total", labels, ["GET", "/healthz", "200"], ""
    )
    left_over.write_value(key, 1000.0, 0.0)
    left_over.close()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "EPIX_DATA_DIR": str(data_dir), "EPIX_RUN_WORKER_IN_PROCESS": "false"}
    env.pop("EPIX_DATABASE_URL", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "epix.cli", "serve", "--port", str(port), "--workers", "2"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 180  # two processes importing on a busy machine
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail("the node did not start")
        yield url
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0].decode()
        assert server.returncode == 0, output


@pytest.mark.slow
def test_every_worker_process_answers_with_the_nodes_request_total(two_worker_node: str) -> None:
    """Each connection asks /healthz (which names its process) and submits without a
    credential, then scrapes /metrics on the same connection, so the scrape is known to come
    from that process; both must count every request the node answered so far."""
    answered = 0
    scrapes_by_process: dict[str, list[tuple[int, float]]] = {}
    deadline = time.monotonic() + 90
    while len(scrapes_by_process) < 2 or min(map(len, scrapes_by_process.values())) < 3:
        assert time.monotonic() < deadline, f"one process took every connection: {answered}"
        with httpx.Client(base_url=two_worker_node, timeout=5) as connection:
            process = connection.get("/healthz").json()["process"]
            assert connection.post("/v1/messages", content=b"<a/>").status_code == 401
            answered += 1
            # The process counts a request just after its answer went out: allow it a moment.
            for _ in range(50):
                scraped = connection.get("/metrics").text
                totals = (_scraped(scraped, HEALTHZ_SERIES), _scraped(scraped, REFUSED_SERIES))
                if totals == (answered, answered):
                    break
                time.sleep(0.01)
            scrapes_by_process.setdefault(process, []).append((answered, *totals))
    for process, scrapes in scrapes_by_process.items():
        assert all(row == (row[0],) * 3 for row in scrapes), (process, scrapes)
