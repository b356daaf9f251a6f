"""``epix serve --workers N`` whose web processes cannot start ends with status 3.

``epix serve`` checks what it can before it starts any web process (settings, the session key,
the reference data), so here the web processes are started the way serve starts them
(``_run_web_processes``, uvicorn's supervisor) on a node whose Species+ answers only they read.
Before, uvicorn stopped the node and returned as from a clean stop: exit status 0, so a service
manager saw nothing wrong.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import pytest

from epix.cli.serve import _run_web_processes, uvicorn_options
from tests.conftest import REPO_ROOT
from tests.db.node_process import free_port, node_env, written_so_far


@pytest.mark.slow
def test_web_processes_that_cannot_start_stop_serve_with_status_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    answers = tmp_path / "speciesplus"
    answers.mkdir()
    (answers / "taxon_concepts.json").write_text('{"taxon_concepts": [', encoding="utf-8")
    monkeypatch.setenv("EPIX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EPIX_SPECIESPLUS_DIR", str(answers))
    monkeypatch.setenv("EPIX_RUN_WORKER_IN_PROCESS", "false")

    with pytest.raises(click.exceptions.Exit) as ended:
        _run_web_processes(uvicorn_options("127.0.0.1", free_port(), workers=2))

    assert ended.value.exit_code == 3
    output = capfd.readouterr()
    said = output.out + output.err
    assert "The web worker process cannot start" in said
    assert "taxon_concepts.json" in said  # the problem, named
    assert "Traceback" not in said


@pytest.mark.slow
def test_web_processes_that_cannot_load_the_application_code_stop_serve_at_once(
    tmp_path: Path,
) -> None:
    """An upgrade that left out a module only the application imports (serve's own process
    never imports it): each web process ended with status 1, which uvicorn answers by starting
    another, so the node restarted them for ever, one every 30 s, as each died with a
    healthcheck ping unanswered that uvicorn waited the node's 30 s for."""
    installed = tmp_path / "installed"
    shutil.copytree(
        REPO_ROOT / "epix", installed / "epix", ignore=shutil.ignore_patterns("__pycache__")
    )
    (installed / "schemas").symlink_to(REPO_ROOT / "schemas")
    (installed / "epix" / "web" / "pages.py").unlink()
    env = {**node_env(tmp_path / "data"), "PYTHONPATH": str(installed)}
    command = [sys.executable, "-m", "epix.cli", "serve", "--port", str(free_port())]
    with tempfile.TemporaryFile() as printed:
        server = subprocess.Popen(
            [*command, "--workers", "2"],
            cwd=installed,
            env=env,
            stdout=printed,
            stderr=subprocess.STDOUT,
        )
        failed_at: float | None = None
        try:
            deadline = time.monotonic() + 180  # two processes importing on a busy machine
            while server.poll() is None:
                said = written_so_far(printed).decode(errors="replace")
                assert "died" not in said, said  # uvicorn's line when it starts another
                assert time.monotonic() < deadline, said
                if failed_at is None and "No module named 'epix.web.pages'" in said:
                    failed_at = time.monotonic()
                time.sleep(0.2)
            ended_at = time.monotonic()
        finally:
            server.terminate()
            server.wait(timeout=30)
        said = written_so_far(printed).decode(errors="replace")
    assert server.returncode == 3, said
    assert "ModuleNotFoundError: No module named 'epix.web.pages'" in said
    assert failed_at is not None and ended_at - failed_at < 20, said
