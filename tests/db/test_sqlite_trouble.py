"""SQLite that cannot take a write: locked by another program past the busy timeout, the
write turn held too long, a disk that takes no more bytes, a read-only file. The client gets
a 503 with a code and ``Retry-After``, nothing is half-stored, and the next request after the
cause is gone succeeds."""

from __future__ import annotations

import logging
import resource
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import DBAPIError, OperationalError

from epix.api.app import create_app
from epix.audit.models import AuditEvent
from epix.db import Database
from epix.db import engine as db_engine
from epix.db.trouble import CANNOT_STORE, database_trouble
from epix.exchange.demo import load_demo
from epix.permits.samples import demo_permit
from epix.permits.writer import write_permit
from epix.registry.follower import RegistryFollower
from epix.settings import Settings
from epix.signatures.sign import sign_document
from tests.db.node_process import FAILED_LOGIN, free_port, running_node


@pytest.fixture
def quick_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """A node database whose writers give up after 0.3 s instead of 30 s."""
    monkeypatch.setattr(db_engine, "SQLITE_BUSY_TIMEOUT_MS", 300)
    database = Database(f"sqlite:///{tmp_path / 'epix.sqlite3'}")
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def client(quick_database: Database, tmp_path: Path) -> TestClient:
    return TestClient(create_app(Settings(data_dir=tmp_path), quick_database))


def _audit_events(database: Database) -> int:
    with database.read() as session:
        return int(session.scalar(select(func.count()).select_from(AuditEvent)) or 0)


def _assert_saturated(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"] == "2"
    assert answer.json()["code"] == "EPIX-DB-003"


def test_a_file_locked_by_another_program_past_the_busy_timeout(
    client: TestClient, quick_database: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = _audit_events(quick_database)
    other = sqlite3.connect(tmp_path / "epix.sqlite3", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # e.g. an operator's sqlite3 shell in a transaction
    try:
        _assert_saturated(client.post("/v1/auth/login", json=FAILED_LOGIN))
        assert client.get("/readyz").status_code == 200  # reads go on beside the lock
    finally:
        other.rollback()
        other.close()
    assert "EPIX-DB-003 on POST /v1/auth/login: database is locked" in caplog.text
    assert _audit_events(quick_database) == before
    assert client.post("/v1/auth/login", json=FAILED_LOGIN).status_code == 401
    assert _audit_events(quick_database) == before + 1


def test_the_write_turn_held_too_long(client: TestClient, quick_database: Database) -> None:
    """Another thread of the node holds the write turn (a long transaction): the pool-style
    timeout of the turn is a 503 too, not a 500."""
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with quick_database.unit_of_work():
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        holding.wait(10)
        _assert_saturated(client.post("/v1/auth/login", json=FAILED_LOGIN))
    finally:
        release.set()
        holder.join()
    assert client.post("/v1/auth/login", json=FAILED_LOGIN).status_code == 401


def test_a_read_only_file_is_cannot_store(tmp_path: Path) -> None:
    """SQLite's own error for a file it may only read is classified as EPIX-DB-004 (as root,
    a chmod does not stop this process, so the file is opened read-only as a node would after
    the operator's chmod)."""
    path = tmp_path / "epix.sqlite3"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.commit()
    engine = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    try:
        with pytest.raises(OperationalError) as refused, engine.begin() as connection:
            connection.execute(text("INSERT INTO t VALUES (1)"))
    finally:
        engine.dispose()
    assert "readonly database" in str(refused.value.orig)
    trouble = database_trouble(refused.value)
    assert trouble is not None and trouble.code == CANNOT_STORE


@pytest.mark.slow
def test_a_disk_that_takes_no_more_bytes(tmp_path: Path) -> None:
    """A real ``epix serve`` whose file size limit drops to 0 (``prlimit``): every write to a
    file fails (EFBIG), as on a full or read-only file system. A submission is 503 EPIX-DB-004
    and nothing of it is stored; the readiness probe's read goes on; once the node can write
    again, the same submission is accepted as new, without a restart."""
    data_dir = tmp_path / "data"
    with running_node(data_dir, "--demo") as node:
        demo = load_demo(Settings(data_dir=data_dir))
        assert demo is not None
        number = f"XA-{uuid.uuid4().hex[:10]}"
        body = sign_document(write_permit(demo_permit(number=number)), *demo.signing_identity("XA"))
        headers = {
            "Authorization": f"Bearer {demo.api_key('XA', 'management_authority')}",
            "Content-Type": "application/xml",
            "X-EPIX-Message-Id": f"msg-{number}",
            "X-EPIX-From": "XA",
            "X-EPIX-To": "XB",
            "X-EPIX-Document-Type": "permit",
        }
        customs = {"Authorization": f"Bearer {demo.api_key('XB', 'customs')}"}
        limit = resource.prlimit(node.pid, resource.RLIMIT_FSIZE)
        with httpx.Client(base_url=node.url, timeout=30) as client:
            resource.prlimit(node.pid, resource.RLIMIT_FSIZE, (0, limit[1]))
            try:
                refused = client.post("/v1/messages", content=body, headers=headers)
                assert refused.status_code == 503, refused.text
                assert refused.headers["retry-after"] == "60"
                assert refused.json()["code"] == "EPIX-DB-004"
                assert client.get("/readyz").status_code == 200  # reading needs no disk
            finally:
                resource.prlimit(node.pid, resource.RLIMIT_FSIZE, limit)
            accepted = client.post("/v1/messages", content=body, headers=headers)
            assert accepted.status_code == 201, accepted.text
            assert len(client.get("/v1/inbox", headers=customs).json()["entries"]) == 1
    assert "Traceback" not in node.output, node.output


def test_the_registry_follower_waits_out_a_locked_database(
    quick_database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """The follower thread outlives the outage and says so twice, not at every refresh."""
    follower = RegistryFollower(
        quick_database,
        source_url=f"http://127.0.0.1:{free_port()}/v1/registry",  # nothing listens
        anchor_pem=b"",
        deadline_seconds=2,
    )
    stop = threading.Event()
    following = threading.Thread(target=follower.follow, args=(0.05, stop))
    other = sqlite3.connect(quick_database.engine.url.database or "", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with caplog.at_level(logging.INFO, logger="epix.registry"):
        following.start()
        try:
            time.sleep(2)  # several refreshes, each waiting 0.3 s for the lock
            other.rollback()
            time.sleep(1)
            assert following.is_alive()
        finally:
            stop.set()
            following.join(10)
            other.close()
            follower.client.close()
    lines = [record.getMessage() for record in caplog.records]
    unavailable = [line for line in lines if "database unavailable (EPIX-DB-003" in line]
    assert len(unavailable) == 1, lines
    assert sum("registry follower: the database answers again" in line for line in lines) == 1
    assert not any(record.exc_info for record in caplog.records)


def test_a_bug_is_no_outage(tmp_path: Path) -> None:
    """A missing table or a broken constraint is the node's fault, not a reason to make the
    client retry: it stays a 500 EPIX-REQ-007 with its traceback for the operator."""
    engine = create_engine(f"sqlite:///{tmp_path / 'bugs.sqlite3'}")
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE t (x PRIMARY KEY)"))
            connection.execute(text("INSERT INTO t VALUES (1)"))
        for statement in ("SELECT * FROM no_such_table", "INSERT INTO t VALUES (1)"):
            with pytest.raises(DBAPIError) as failed, engine.begin() as connection:
                connection.execute(text(statement))
            assert database_trouble(failed.value) is None, statement
    finally:
        engine.dispose()
