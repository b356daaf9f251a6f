"""The data directory of a node: what holds secrets is owner-only, and what `epix serve` prints
holds no credential unless the operator asked for the demo."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import need_command
from tests.db.node_process import epix, free_port, running_node


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> object:
    """Most systems create files 0644 and directories 0755, readable by every local user."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.mark.slow
def test_a_new_node_keeps_its_database_keys_and_secret_owner_only(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with running_node(data_dir, "--demo", "--workers", "2"):
        private = {
            name: mode(data_dir / name)
            for name in (
                "epix.sqlite3",
                "epix.sqlite3-wal",
                "epix.sqlite3-shm",
                "epix.sqlite3-writelock",
                "session-secret",
                "keys/node.key.pem",
                "demo/demo.json",
            )
        }
    assert private == dict.fromkeys(private, 0o600)
    directories = [data_dir, *(path for path in data_dir.rglob("*") if path.is_dir())]
    assert {data_dir / "keys", data_dir / "demo", data_dir / "metrics"} <= set(directories)
    assert {path: mode(path) for path in directories} == dict.fromkeys(directories, 0o700)


def test_a_database_an_older_version_left_world_readable_is_made_owner_only(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    database = data_dir / "epix.sqlite3"
    connection = sqlite3.connect(database)  # as sqlite3 made it before: 0644
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE older (x)")
    assert mode(database) == 0o644
    connection.close()
    migrated = epix(data_dir, "users", "list")
    assert migrated.returncode == 0, migrated.stderr
    assert mode(database) == 0o600


@pytest.mark.slow
def test_only_the_demo_prints_credentials_at_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with running_node(data_dir, "--demo") as demo_node:
        pass
    users = json.loads((data_dir / "demo" / "demo.json").read_text())["users"]
    secrets = [user["api_key"] for user in users] + [user["password"] for user in users]
    assert all(secret in demo_node.output for secret in secrets)  # TEST ONLY, asked for
    secret_key = (data_dir / "session-secret").read_text().strip()
    with running_node(data_dir) as node:
        pass
    assert "Uvicorn running" in node.output
    for secret in [*secrets, secret_key]:
        assert secret not in node.output


@contextmanager
def unwritable(directory: Path) -> Iterator[None]:
    """``directory`` made unwritable for this process: 0555, or immutable for root (whom no
    mode stops)."""
    directory.mkdir(mode=0o555)
    if os.geteuid() == 0:
        chattr = need_command("chattr")
        subprocess.run([chattr, "+i", str(directory)], check=True)
    try:
        yield
    finally:
        if os.geteuid() == 0:
            subprocess.run([chattr, "-i", str(directory)], check=True)


def test_a_data_directory_the_node_cannot_write_stops_it_at_start(tmp_path: Path) -> None:
    """The database may live elsewhere, but the node key is made in the data directory on
    first start: the node used to start anyway and fail every submission it had to sign."""
    data_dir = tmp_path / "data"
    env = {"EPIX_SECRET_KEY": "k" * 48}
    with unwritable(data_dir):
        refused = epix(
            data_dir,
            "serve",
            "--port",
            str(free_port()),
            database_url=f"sqlite:///{tmp_path / 'epix.sqlite3'}",
            extra_env=env,
            timeout=60,
        )
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"The data directory {data_dir} cannot be used" in refused.stderr
    assert "writable by the user running the node" in refused.stderr
    assert "Traceback" not in refused.stderr and "Uvicorn running" not in refused.stderr
