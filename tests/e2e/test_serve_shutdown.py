"""``epix serve`` stopped with SIGTERM (``docker stop``, systemd) ends through its clean-up."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.db.node_process import running_node


def test_sigterm_lets_the_outbox_worker_in_the_node_stop_cleanly(tmp_path: Path) -> None:
    """uvicorn, serving in the command's own process, sends SIGTERM again after its shutdown;
    with Python's default handler that ended the process on the spot (exit status 143), before
    the outbox worker thread was stopped: deliveries in flight were cut off and their rows
    waited for their lease to expire."""
    extra_env = {"EPIX_RUN_WORKER_IN_PROCESS": "true", "EPIX_LOG_LEVEL": "info"}
    with running_node(tmp_path / "data", extra_env=extra_env) as node:
        assert httpx.get(f"{node.url}/readyz", timeout=10).status_code == 200
    assert node.returncode == 0, node.output
    started = re.search(r"outbox worker (\S+) started", node.output)
    assert started is not None, node.output
    assert f"outbox worker {started.group(1)} stopped" in node.output
