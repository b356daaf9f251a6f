"""A throwaway PostgreSQL cluster of a test's own, which it may stop, start and fill up.

The shared server (``EPIX_TEST_POSTGRES_URL``) serves every other test and must never go down,
so outage tests run ``initdb`` and ``pg_ctl`` from Debian's ``postgresql`` package (installed by
``.ci/run``) on a free loopback port in a temporary directory, as the ``postgres`` user when
the tests run as root (``initdb`` refuses root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from tests.conftest import need
from tests.db.node_process import free_port

USER = "epix_outage"
# Distinctive, so a test can prove it never reaches a log line.
PASSWORD = "pw-7f3a9c-never-logged"


_AS_SERVER_USER = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _postgres_bin() -> Path | None:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parts)
    return versions[-1].parent if versions else None


class OwnPostgres:
    """A cluster on ``127.0.0.1:port`` with one superuser; ``stop`` and ``start`` it at will."""

    def __init__(self, bin_dir: Path, root: Path) -> None:
        self.bin_dir, self.root, self.port = bin_dir, root, free_port()
        self.url = f"postgresql+psycopg://{USER}:{PASSWORD}@127.0.0.1:{self.port}/postgres"
        self.conninfo = (
            f"host=127.0.0.1 port={self.port} dbname=postgres user={USER} password={PASSWORD}"
        )

    def _run(self, *command: str) -> None:
        done = subprocess.run(
            [*_AS_SERVER_USER, *command], capture_output=True, text=True, timeout=60, cwd=self.root
        )
        assert done.returncode == 0, done.stdout + done.stderr

    def create(self, max_connections: int) -> None:
        password_file = self.root / "password"
        password_file.write_text(PASSWORD + "\n")
        self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.root / "data"),
            "-U",
            USER,
            "--pwfile",
            str(password_file),
            "-A",
            "scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
            "max_connections": str(max_connections),
            "superuser_reserved_connections": "0",
            "fsync": "off",
        }
        with (self.root / "data" / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def start(self) -> None:
        log = str(self.root / "server.log")
        self._run(
            str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-l", log, "-w", "start"
        )

    def stop(self) -> None:
        """A fast shutdown: every session is cut off and its open transaction rolled back."""
        self._run(
            str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "-w", "stop"
        )

    def connect(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.conninfo, autocommit=True)


@contextmanager
def own_postgres(max_connections: int = 20) -> Iterator[OwnPostgres]:
    bin_dir = _postgres_bin()
    need(bin_dir is not None, "PostgreSQL server binaries (initdb, pg_ctl)")
    need(os.geteuid() != 0 or shutil.which("runuser") is not None, "runuser (initdb refuses root)")
    assert bin_dir is not None
    root = Path(tempfile.mkdtemp(prefix="epix-own-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    cluster = OwnPostgres(bin_dir, root)
    try:
        cluster.create(max_connections)
        cluster.start()
        yield cluster
    finally:
        subprocess.run(
            [
                *_AS_SERVER_USER,
                str(bin_dir / "pg_ctl"),
                "-D",
                str(root / "data"),
                "-m",
                "immediate",
                "stop",
            ],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)
