"""SQLite units of work of one process take turns in arrival order, re-entrantly."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from epix.db import Database
from epix.db.engine import _FairTurn


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
