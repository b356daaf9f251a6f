"""Engine and unit of work.

Services receive a ``Session`` and never commit; whoever owns the scope (an HTTP request, a
CLI command, a worker iteration) opens ``Database.unit_of_work()``, which commits on success and
rolls back on any exception. On SQLite every transaction starts with ``BEGIN IMMEDIATE`` so
writers queue instead of failing on lock upgrades; PostgreSQL uses row locks
(``FOR UPDATE SKIP LOCKED``) where work is claimed.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

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
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


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
                url, echo=echo, poolclass=NullPool, connect_args={"check_same_thread": False}
            )
            _configure_sqlite(self.engine)
        else:
            self.engine = create_engine(
                url, echo=echo, pool_size=10, max_overflow=20, pool_pre_ping=True
            )
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        """A session whose work is committed when the block ends without an exception."""
        session = self.sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def migrate(self) -> None:
        """Apply every migration branch up to its head (run on start and in tests)."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.attributes["connection_engine"] = self.engine
        command.upgrade(config, "heads")

    def dispose(self) -> None:
        self.engine.dispose()
