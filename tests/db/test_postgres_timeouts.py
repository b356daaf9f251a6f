"""Every wait on PostgreSQL is bounded: a host that vanishes, a statement that runs on, a
server address that never answers a command-line tool."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Connection, make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from epix.audit.service import lock_chain_head, record_event
from epix.cli.main import cli
from epix.db import Database, engine
from epix.db.engine import (
    POSTGRES_CONNECT_TIMEOUT_SECONDS,
    POSTGRES_CONNECTION_DEFAULTS,
    POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_MS,
    POSTGRES_STATEMENT_TIMEOUT_MS,
    without_statement_timeout,
)
from epix.db.trouble import UNREACHABLE, DatabaseTrouble, database_trouble
from epix.settings import get_settings
from tests.conftest import POSTGRES_URL, REPO_ROOT, need
from tests.db.node_process import node_env

pytestmark = pytest.mark.postgres


@contextmanager
def _socket_of(database: Database) -> Iterator[socket.socket]:
    """The TCP socket of a real pooled connection (a duplicate of its descriptor)."""
    raw = database.engine.raw_connection()
    try:
        descriptor = raw.driver_connection.pgconn.socket  # type: ignore[union-attr]
        with socket.socket(fileno=os.dup(descriptor)) as duplicate:
            yield duplicate
    finally:
        raw.close()


def _tcp_options(sock: socket.socket) -> dict[str, int]:
    return {
        "keepalives": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        "keepalives_idle": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        "keepalives_interval": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
        "keepalives_count": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
        "tcp_user_timeout": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
    }


def _setting_ms(session: Session | Connection, name: str) -> int:
    query = text("SELECT setting FROM pg_settings WHERE name = :name")
    return int(session.execute(query, {"name": name}).scalar_one())


def _statement_timeout_ms(session: Session | Connection) -> int:
    return _setting_ms(session, "statement_timeout")


def test_a_connection_finds_a_vanished_host_and_bounds_its_statements(
    postgres_database: Database,
) -> None:
    """Without keepalive settings the kernel's apply (first probe after 7200 s), and without a
    user timeout an unacknowledged statement is retransmitted for about 15 minutes."""
    with _socket_of(postgres_database) as sock:
        assert _tcp_options(sock) == POSTGRES_CONNECTION_DEFAULTS
    with postgres_database.read() as session:
        assert _statement_timeout_ms(session) == POSTGRES_STATEMENT_TIMEOUT_MS
        assert (
            _setting_ms(session, "idle_in_transaction_session_timeout")
            == POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_MS
        )


def test_the_urls_own_connection_parameters_win(postgres_database: Database) -> None:
    url = make_url(postgres_database.url).update_query_dict(
        {"keepalives_idle": "42", "options": "-c statement_timeout=0"}
    )
    database = Database(url.render_as_string(hide_password=False))
    try:
        with _socket_of(database) as sock:
            assert _tcp_options(sock)["keepalives_idle"] == 42
            assert _tcp_options(sock)["keepalives_interval"] == 5
        with database.read() as session:
            assert _statement_timeout_ms(session) == 0
            assert (
                _setting_ms(session, "idle_in_transaction_session_timeout")
                == POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_MS
            )
    finally:
        database.dispose()
    url = url.update_query_dict({"options": "-c idle_in_transaction_session_timeout=0"})
    database = Database(url.render_as_string(hide_password=False))
    try:
        with database.read() as session:
            assert _setting_ms(session, "idle_in_transaction_session_timeout") == 0
            assert _statement_timeout_ms(session) == POSTGRES_STATEMENT_TIMEOUT_MS
    finally:
        database.dispose()


def test_a_transaction_left_idle_is_ended_and_its_locks_released(
    postgres_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that hangs (or is stopped) holding the audit chain head would otherwise make
    every audited request wait for ever, or fail at its statement timeout, until someone kills
    it; the server ends such a session after the idle-in-transaction timeout (here 0.3 s). The
    hung process, should it wake up, meets a lost connection (503 EPIX-DB-002), not a 500."""
    monkeypatch.setattr(engine, "POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_MS", 300)
    hanging = Database(postgres_database.url)
    try:
        with (
            pytest.raises(DBAPIError, match="idle-in-transaction timeout") as ended,
            hanging.unit_of_work() as stuck,
        ):
            lock_chain_head(stuck)
            pid = stuck.execute(text("SELECT pg_backend_pid()")).scalar_one()
            deadline = time.monotonic() + 10
            while _backend_alive(postgres_database, pid):
                assert time.monotonic() < deadline, "the idle transaction was not ended"
                time.sleep(0.05)
            with postgres_database.unit_of_work() as writer:
                writer.execute(text("SET LOCAL lock_timeout = 2000"))
                lock_chain_head(writer)  # would wait for the stuck session's lock
            stuck.execute(text("SELECT 1"))
        assert ended.value.connection_invalidated
        assert database_trouble(ended.value) == DatabaseTrouble(UNREACHABLE)
        with hanging.unit_of_work() as session:  # the dead connection was dropped from the pool
            assert session.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        hanging.dispose()


def _backend_alive(database: Database, pid: int) -> bool:
    with database.read() as session:
        query = text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")
        return bool(session.execute(query, {"pid": pid}).scalar_one())


def test_migrations_run_without_the_statement_timeout(postgres_database: Database) -> None:
    """A migration that builds an index over a large table may rightly take minutes; the
    setting is lifted only for its own transaction, not for the pooled connection after it."""
    with postgres_database.engine.connect() as connection:
        without_statement_timeout(connection)
        assert _statement_timeout_ms(connection) == 0
        connection.rollback()
        assert _statement_timeout_ms(connection) == POSTGRES_STATEMENT_TIMEOUT_MS


def test_a_command_against_a_silent_server_gives_up_within_the_connect_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`epix audit verify` and `epix backup` first look whether the database is set up; that
    connection, too, must not wait for a server address that takes the connection but never
    speaks (without a timeout libpq waits for ever: the kernel has acknowledged every byte)."""
    need(POSTGRES_URL is not None, "PostgreSQL (EPIX_TEST_POSTGRES_URL)")
    monkeypatch.setenv("EPIX_DATA_DIR", str(tmp_path / "data"))
    results: list[Result] = []
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        monkeypatch.setenv(
            "EPIX_DATABASE_URL", f"postgresql+psycopg://epix:s3cret@127.0.0.1:{port}/epix"
        )
        get_settings.cache_clear()
        try:
            for command in (["audit", "verify"], ["backup", str(tmp_path / "copy")]):
                started = time.monotonic()
                # A thread, so that a command that hangs fails the test instead of holding it.
                runner = threading.Thread(
                    target=lambda args: results.append(CliRunner().invoke(cli, args)),
                    args=(command,),
                    daemon=True,
                )
                runner.start()
                runner.join(POSTGRES_CONNECT_TIMEOUT_SECONDS + 10)
                assert not runner.is_alive(), f"epix {command[0]} still waits"
                assert time.monotonic() - started >= POSTGRES_CONNECT_TIMEOUT_SECONDS
        finally:
            get_settings.cache_clear()
    for result in results:
        assert result.exit_code == 1, result.output
        assert "connection timeout expired" in result.output and "s3cret" not in result.output


def test_an_export_into_a_pipe_its_reader_stops_reading_is_not_ended(
    postgres_database: Database, tmp_path: Path
) -> None:
    """`epix audit export | less` reads the trail in one transaction and blocks on the full
    pipe while the person reads: the server must not end it as a hung session (here after
    0.3 s; 60 s by default)."""
    with postgres_database.unit_of_work() as session:
        for index in range(400):  # about 200 KiB of export: the pipe holds 64 KiB
            record_event(session, action="lookup", outcome="ok", permit_number=f"XA-{index}")
    url = make_url(postgres_database.url).update_query_dict(
        {"options": "-c idle_in_transaction_session_timeout=300"}
    )
    env = node_env(tmp_path / "data", url.render_as_string(hide_password=False))
    with subprocess.Popen(
        [sys.executable, "-m", "epix.cli", "audit", "export"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as export:
        assert export.stdout is not None
        header = export.stdout.readline()  # the export has begun
        time.sleep(1.5)  # the pipe is full and the export waits for its reader
        rest, errors = export.communicate(timeout=120)
    assert export.returncode == 0, errors.decode()
    records = [json.loads(line)["record"] for line in [header, *rest.splitlines()]]
    assert records[0] == "export" and records.count("event") == 400
