"""SQLite units of work take turns in arrival order, re-entrantly, within a process and, through
a ``flock`` next to the database file, between processes."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from epix.db import Database
from epix.db.engine import _FairTurn, _FileWriteLock


def _wait_until_queued(turn: _FairTurn, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(turn._waiting) < count:
        assert time.monotonic() < deadline, "waiters never queued"
        time.sleep(0.001)


def test_waiters_get_the_turn_in_arrival_order() -> None:
    turn = _FairTurn()
    assert turn.acquire(1)
    order: list[int] = []

    def waiter(number: int) -> None:
        assert turn.acquire(10)
        order.append(number)
        turn.release()

    threads = []
    for number in range(5):
        thread = threading.Thread(target=waiter, args=(number,))
        thread.start()
        threads.append(thread)
        _wait_until_queued(turn, number + 1)
    turn.release()
    for thread in threads:
        thread.join(10)
    assert order == [0, 1, 2, 3, 4]


def test_the_holder_may_take_its_turn_again() -> None:
    turn = _FairTurn()
    assert turn.acquire(1) and turn.acquire(1)
    turn.release()
    acquired: list[bool] = []
    other = threading.Thread(target=lambda: acquired.append(turn.acquire(0.05)))
    other.start()
    other.join(10)
    assert acquired == [False]  # still held once
    turn.release()
    assert turn.acquire(0.05)


def test_a_busy_thread_does_not_starve_the_others(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'turns.sqlite3'}")
    done: dict[str, int] = {"busy": 0, "other": 0}
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            with database.unit_of_work() as session:
                session.execute(text("SELECT 1"))
            done["busy"] += 1

    def other() -> None:
        for _ in range(20):
            with database.unit_of_work() as session:
                session.execute(text("SELECT 1"))
            done["other"] += 1

    spinner = threading.Thread(target=busy)
    spinner.start()
    try:
        waiter = threading.Thread(target=other)
        waiter.start()
        waiter.join(30)
    finally:
        stop.set()
        spinner.join(30)
        database.dispose()
    assert done["other"] == 20


def test_a_unit_of_work_gives_up_when_the_turn_never_comes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = Database(f"sqlite:///{tmp_path / 'turns.sqlite3'}")
    monkeypatch.setattr("epix.db.engine.SQLITE_BUSY_TIMEOUT_MS", 50)
    holding, release = threading.Event(), threading.Event()

    def holder() -> None:
        with database.unit_of_work():
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    holding.wait(10)
    try:
        with pytest.raises(PoolTimeoutError), database.unit_of_work():
            pass
    finally:
        release.set()
        thread.join(10)
        database.dispose()


def test_a_read_goes_on_while_a_writer_holds_the_lock(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'turns.sqlite3'}")
    with database.unit_of_work() as session:
        session.execute(text("CREATE TABLE notes (body TEXT)"))
        session.execute(text("INSERT INTO notes VALUES ('committed')"))
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:
        with database.unit_of_work() as session:
            session.execute(text("INSERT INTO notes VALUES ('in flight')"))
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    holding.wait(10)
    try:
        started = time.monotonic()
        with database.read() as session:  # neither the turn nor the write lock is taken
            bodies = session.execute(text("SELECT body FROM notes")).scalars().all()
        assert time.monotonic() - started < 5
        assert bodies == ["committed"]  # a snapshot: the writer's row is not visible yet
    finally:
        release.set()
        thread.join(10)
    database.dispose()


def test_what_a_read_session_writes_is_never_committed(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'turns.sqlite3'}")
    with database.unit_of_work() as session:
        session.execute(text("CREATE TABLE notes (body TEXT)"))
    with database.read() as session:
        session.execute(text("INSERT INTO notes VALUES ('stray')"))
    with database.read() as session:
        assert session.execute(text("SELECT count(*) FROM notes")).scalar_one() == 0
    database.dispose()


def _without_busy_handler(url: str) -> Database:
    """A Database whose connections fail at once on a locked file instead of polling, so that
    only the cross-process write lock can make concurrent writers wait."""
    database = Database(url)

    @event.listens_for(database.engine, "connect")
    def _no_busy_timeout(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=0")

    return database


def _increment(url: str, times: int, start: Any) -> None:
    database = _without_busy_handler(url)
    start.wait(60)  # both processes write at the same time
    for _ in range(times):
        with database.unit_of_work() as session:
            value = session.execute(text("SELECT value FROM counter")).scalar_one()
            session.execute(text("UPDATE counter SET value = :value"), {"value": value + 1})
    database.dispose()


def _write_after(url: str, trying: Any) -> None:
    database = _without_busy_handler(url)
    trying.set()
    with database.unit_of_work() as session:
        session.execute(text("INSERT INTO notes VALUES ('second')"))
    database.dispose()


def _counter_database(tmp_path: Path) -> tuple[str, Database]:
    url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    database = Database(url)  # stays open, so no process re-initialises the WAL index
    with database.unit_of_work() as session:
        session.execute(text("CREATE TABLE counter (value INTEGER)"))
        session.execute(text("INSERT INTO counter VALUES (0)"))
        session.execute(text("CREATE TABLE notes (body TEXT)"))
    return url, database


def test_writers_in_two_processes_all_succeed(tmp_path: Path) -> None:
    url, database = _counter_database(tmp_path)
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Barrier(2)
    workers = [spawn.Process(target=_increment, args=(url, 200, start)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    try:
        assert [worker.exitcode for worker in workers] == [0, 0]
        with database.read() as session:
            assert session.execute(text("SELECT value FROM counter")).scalar_one() == 400
    finally:
        database.dispose()


def test_a_second_process_waits_for_the_write_lock(tmp_path: Path) -> None:
    url, database = _counter_database(tmp_path)
    spawn = multiprocessing.get_context("spawn")
    trying = spawn.Event()
    second = spawn.Process(target=_write_after, args=(url, trying))
    with database.unit_of_work() as session:
        session.execute(text("INSERT INTO notes VALUES ('first')"))
        second.start()
        assert trying.wait(60)
        time.sleep(0.3)  # the second process is now (most likely) queued behind this one
    second.join(60)
    try:
        assert second.exitcode == 0
        with database.read() as session:
            notes = session.execute(text("SELECT body FROM notes ORDER BY rowid")).scalars()
            assert list(notes) == ["first", "second"]
    finally:
        database.dispose()


def test_a_lock_waiter_that_gave_up_leaves_the_lock_free(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3-writelock"
    first, second = _FileWriteLock(path), _FileWriteLock(path)  # two open files: two owners
    assert first.acquire(1)
    assert not second.acquire(0.05)  # its queued flock is abandoned, not lost
    first.release()
    assert second.acquire(10)
    assert not first.acquire(0.05)
    second.release()
    assert first.acquire(10)
    first.release()


def test_a_later_caller_takes_over_the_queued_request(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3-writelock"
    first, second = _FileWriteLock(path), _FileWriteLock(path)
    assert first.acquire(1) and first.acquire(1)  # re-entrant: one release keeps it
    first.release()
    assert not second.acquire(0.05)
    acquired: list[bool] = []
    waiter = threading.Thread(target=lambda: acquired.append(second.acquire(30)))
    waiter.start()
    first.release()
    waiter.join(30)
    assert acquired == [True]
    assert not first.acquire(0.05)
    second.release()
