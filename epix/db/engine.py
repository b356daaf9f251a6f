"""Engine and unit of work.

Services receive a ``Session`` and never commit; whoever owns the scope (an HTTP request, a
CLI command, a worker iteration) opens ``Database.unit_of_work()``, which commits on success and
rolls back on any exception. On SQLite every transaction starts with ``BEGIN IMMEDIATE`` so
writers queue instead of failing on lock upgrades; PostgreSQL uses row locks
(``FOR UPDATE SKIP LOCKED``) where work is claimed.

SQLite connections are pooled (a new one per transaction cost a connect, four PRAGMAs and the
WAL checkpoint SQLite runs when its last connection closes), and the units of work of one
process take turns in arrival order (``_FairTurn``) before their ``BEGIN IMMEDIATE``: every
transaction takes the write lock anyway, and SQLite's own busy handler polls with sleeps of up
to 100 ms, which made the tail latency of concurrent submissions seconds long and let one busy
thread starve the others. Other processes on the same file still queue through busy_timeout.
"""

from __future__ import annotations

import importlib
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000
_READ_ONLY = "epix_read_only"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Every module that declares tables; imported before comparing metadata with migrations.
MODEL_MODULES = (
    "epix.registry.models",
    "epix.audit.models",
    "epix.auth.models",
    "epix.exchange.models",
    "epix.endorsements.models",
    "epix.delivery.models",
)


def import_all_models() -> None:
    for name in MODEL_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not name.startswith(exc.name):
                raise


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" hook issues BEGIN
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A read takes a WAL snapshot and no lock; everything else queues for the write lock.
        read_only = connection.get_execution_options().get(_READ_ONLY, False)
        connection.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")


class _FairTurn:
    """A re-entrant lock handed to waiters in arrival order (``threading.Lock`` is not fair)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._waiting: deque[threading.Event] = deque()
        self._owner: int | None = None
        self._depth = 0

    def acquire(self, timeout: float) -> bool:
        me = threading.get_ident()
        with self._guard:
            if self._owner == me:
                self._depth += 1
                return True
            if self._owner is None:
                self._owner, self._depth = me, 1
                return True
            ticket = threading.Event()
            self._waiting.append(ticket)
        if not ticket.wait(timeout):
            with self._guard:
                if ticket in self._waiting:
                    self._waiting.remove(ticket)
                    return False
        # release() handed the turn over to this ticket (possibly just as the wait timed out).
        with self._guard:
            self._owner, self._depth = me, 1
        return True

    def release(self) -> None:
        with self._guard:
            self._depth -= 1
            if self._depth:
                return
            self._owner = None
            if self._waiting:
                self._owner = -1  # reserved for the next in line until it takes over
                self._waiting.popleft().set()


class Database:
    """One engine and its session factory; cheap to share across threads."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(
                url,
                echo=echo,
                pool_size=2,
                max_overflow=8,
                pool_timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
                connect_args={"check_same_thread": False},
            )
            _configure_sqlite(self.engine)
        else:
            self.engine = create_engine(
                url, echo=echo, pool_size=10, max_overflow=20, pool_pre_ping=True
            )
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._turn = _FairTurn() if self.is_sqlite else None

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        """A session whose work is committed when the block ends without an exception."""
        turn = self._turn
        if turn is not None and not turn.acquire(SQLITE_BUSY_TIMEOUT_MS / 1000):
            raise PoolTimeoutError("timed out waiting for the SQLite write lock")
        try:
            session = self.sessions()
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()
        finally:
            if turn is not None:
                turn.release()

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads only, never committed (rolled back when the block ends).

        On SQLite it neither waits for the write turn nor takes the write lock: it reads a WAL
        snapshot while writers go on. Hot-path reads (authentication, the submit pipeline's
        replay and registry lookups) use it; anything that writes uses ``unit_of_work``.
        """
        session = self.sessions()
        if self.is_sqlite:
            session.connection(execution_options={_READ_ONLY: True})
        try:
            yield session
        finally:
            session.rollback()
            session.close()

    def migrate(self) -> None:
        """Apply every migration branch up to its head (run on start and in tests)."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.attributes["connection_engine"] = self.engine
        command.upgrade(config, "heads")

    def dispose(self) -> None:
        self.engine.dispose()
