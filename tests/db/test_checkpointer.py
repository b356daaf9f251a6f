"""On SQLite the WAL reaches the database file through the background checkpoint thread."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from sqlalchemy import select

from epix.audit.models import AuditEvent
from epix.audit.service import record_event
from epix.db import Database


def _events_in_main_file(path: Path) -> int:
    """Rows as the database file alone has them (``immutable`` ignores the WAL and the locks).

    Read without locks, a file the checkpoint is copying pages into can look malformed for a
    moment; that counts as "not there yet", like a table not copied yet.
    """
    connection = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        (count,) = connection.execute("SELECT count(*) FROM audit_events").fetchone()
    except sqlite3.DatabaseError:  # OperationalError (no table yet) included
        return 0
    finally:
        connection.close()
    return int(count)


def test_commits_reach_the_database_file_and_dispose_stops_the_thread(tmp_path: Path) -> None:
    path = tmp_path / "epix.sqlite3"
    database = Database(f"sqlite:///{path}")
    database.migrate()
    before = set(threading.enumerate())
    for number in range(3):
        with database.unit_of_work() as session:
            record_event(session, action="test.event", outcome="ok", detail={"n": number})
    with database.read() as session:
        assert len(session.scalars(select(AuditEvent.sequence)).all()) == 3
    deadline = time.monotonic() + 30
    while (in_file := _events_in_main_file(path)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert in_file == 3  # far below SQLite's own checkpoint threshold
    started = [t for t in set(threading.enumerate()) - before if t.name == "epix-wal-checkpoint"]
    assert len(started) == 1
    database.dispose()
    assert not started[0].is_alive()
