"""``epix serve --workers N`` whose web processes cannot start ends with status 3.

``epix serve`` checks what it can before it starts any web process (settings, the session key,
the reference data), so here the web processes are started the way serve starts them
(``_run_web_processes``, uvicorn's supervisor) on a node whose Species+ answers only they read.
Before, uvicorn stopped the node and returned as from a clean stop: exit status 0, so a service
manager saw nothing wrong.
"""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from epix.cli.serve import _run_web_processes, uvicorn_options
from tests.db.node_process import free_port


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
