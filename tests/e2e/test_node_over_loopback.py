"""A real node: ``epix serve --demo`` under uvicorn on 127.0.0.1, driven by ``epix demo``."""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO_ROOT


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.slow
def test_demo_exchange_against_a_real_uvicorn_node(tmp_path: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "EPIX_DATA_DIR": str(tmp_path / "data"),
        "EPIX_NODE_BASE_URL": url,
    }
    env.pop("EPIX_DATABASE_URL", None)  # the embedded SQLite database in the data directory
    # As `make run` starts it: the venv's own `epix` script, run from the checkout.
    epix = Path(sys.executable).parent / "epix"
    log_path = tmp_path / "serve.log"
    log_file = log_path.open("wb")
    server = subprocess.Popen(
        [str(epix), "serve", "--demo", "--port", str(port)],
        cwd=REPO_ROOT,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail("the node did not start")
        # The command the node prints, typed into a new terminal whose PATH lacks the venv.
        hint = re.search(r"^Try it: (.+)$", log_path.read_text(), re.MULTILINE)
        assert hint is not None, log_path.read_text()
        assert shlex.split(hint[1])[1:] == ["demo", "--url", url]
        demo = subprocess.run(
            shlex.split(hint[1]),
            cwd=REPO_ROOT,
            env={**env, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "byte-exact: True" in demo.stdout
        assert "signature valid: True" in demo.stdout
        assert "state: acknowledged" in demo.stdout
    finally:
        server.terminate()
        server.wait(timeout=30)
        log_file.close()
    output = log_path.read_text()
    assert "Demo API keys" in output
    # The node's own log lines reach the operator, with time, level and logger (uvicorn sets up
    # only its own loggers; this line was dropped before).
    assert re.search(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO epix\.delivery outbox worker "
        r"\S+ started$",
        output,
        re.MULTILINE,
    ), output
