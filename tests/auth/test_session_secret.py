"""The session key a node generates for itself (``epix.auth.session_secret``)."""

from __future__ import annotations

import errno
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from epix.auth.session_secret import SECRET_FILE_NAME, session_secret
from epix.settings import SECRET_KEY_MIN_BYTES, ConfigurationError, Settings
from tests.db.node_process import epix, free_port


@pytest.mark.parametrize("content", [b"", b"\n", b"short-key", b"\xff" * 40])
def test_a_key_file_holding_no_full_key_is_refused_not_used(tmp_path: Path, content: bytes) -> None:
    """An empty, cut-off or unreadable key file (a process that read it before it was written,
    a full disk, a hand edit) must not sign cookies: an empty key forges every session. The
    refusal names the file and what to do; bytes that are not text were a traceback."""
    path = tmp_path / SECRET_FILE_NAME
    path.write_bytes(content)
    with pytest.raises(ConfigurationError) as refused:
        session_secret(Settings(data_dir=tmp_path))
    assert str(refused.value) == (
        f"the session key file {path} must hold a key of at least 32 bytes of text (was it "
        "emptied or cut off?); delete it to have a new one generated (everyone is logged out, "
        "and webhook secrets stored under the old key can no longer be read), or set "
        "EPIX_SECRET_KEY"
    )


def test_processes_making_the_key_at_once_all_get_the_one_kept(tmp_path: Path) -> None:
    """The web processes of --workers N make the key on a first start, at the same moment:
    each gets the key the file keeps, never an empty or a second one."""
    for attempt in range(20):
        data_dir = tmp_path / str(attempt)
        settings = Settings(data_dir=data_dir)
        with ThreadPoolExecutor(8) as pool:
            keys = set(pool.map(session_secret, [settings] * 8))
        kept = (data_dir / SECRET_FILE_NAME).read_text(encoding="ascii").strip()
        assert keys == {kept} and len(kept) >= SECRET_KEY_MIN_BYTES
        assert [path.name for path in data_dir.iterdir()] == [SECRET_FILE_NAME]
        assert (data_dir / SECRET_FILE_NAME).stat().st_mode & 0o777 == 0o600


def test_the_key_is_made_on_a_volume_without_hard_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A data directory on a network share or a FAT-formatted disk has no hard links (``link``
    fails with EPERM there): the node's first start stopped with an OSError traceback."""

    def no_hard_links(source: object, target: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted", str(target))

    monkeypatch.setattr(os, "link", no_hard_links)
    settings = Settings(data_dir=tmp_path)
    key = session_secret(settings)
    assert len(key) >= SECRET_KEY_MIN_BYTES and session_secret(settings) == key
    assert [path.name for path in tmp_path.iterdir()] == [SECRET_FILE_NAME]


def test_a_key_from_the_settings_is_used_as_it_is(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, secret_key="k" * SECRET_KEY_MIN_BYTES)
    assert session_secret(settings) == "k" * SECRET_KEY_MIN_BYTES
    assert not (tmp_path / SECRET_FILE_NAME).exists()


SHORT_KEY_SETTING = (
    "Error: Invalid configuration: EPIX_SECRET_KEY: Value error, must be at least 32 bytes"
)


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("outbox_worker_in_process", ["true", "false"])
def test_serve_refuses_a_short_key_file_as_a_short_setting_before_anything_starts(
    tmp_path: Path, workers: str, outbox_worker_in_process: str
) -> None:
    """A short EPIX_SECRET_KEY stopped every command with exit status 2 before it started;
    a short key file stopped ``epix serve`` with exit status 1 (an OSError, from the outbox
    worker or the one web process, after migrating) or 3 (each of --workers 2 failing). Both
    are now one refused configuration: exit status 2, before anything is migrated or served,
    whatever --workers, the file named with what to do."""
    data_dir = tmp_path / "data"
    serve = ("serve", "--port", str(free_port()), "--workers", workers)
    in_process = {"EPIX_RUN_WORKER_IN_PROCESS": outbox_worker_in_process}

    setting = epix(data_dir, *serve, extra_env={**in_process, "EPIX_SECRET_KEY": "short"})
    assert setting.returncode == 2, setting.stderr
    assert setting.stderr.startswith(SHORT_KEY_SETTING)

    data_dir.mkdir()
    (data_dir / SECRET_FILE_NAME).write_text("short\n", encoding="ascii")
    key_file = epix(data_dir, *serve, extra_env=in_process)
    assert key_file.returncode == 2, key_file.stderr
    assert key_file.stderr == (
        f"Error: Invalid configuration: the session key file {data_dir / SECRET_FILE_NAME} "
        "must hold a key of at least 32 bytes of text (was it emptied or cut off?); delete it "
        "to have a new one generated (everyone is logged out, and webhook secrets stored under "
        "the old key can no longer be read), or set EPIX_SECRET_KEY\n"
    )
    assert sorted(path.name for path in data_dir.iterdir()) == [SECRET_FILE_NAME]  # no database


@pytest.mark.slow
def test_the_worker_refuses_a_short_key_file_before_migrating(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / SECRET_FILE_NAME).write_text("", encoding="ascii")
    worker = epix(data_dir, "worker", "--once")
    assert worker.returncode == 2, worker.stderr
    assert "Error: Invalid configuration: the session key file" in worker.stderr
    assert (data_dir / "epix.sqlite3").stat().st_size == 0  # opened, not migrated
