"""What a request makes the database do, to compare two requests' work (their timing class):
every statement SQLAlchemy runs, every commit and rollback, and on SQLite also the statements
``epix.db.prepared`` runs straight on the DBAPI cursor (SQLite's trace callback sees them)."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from epix.db import Database


def _shape(sql: str) -> str:
    """A traced SQLite statement without the values SQLite put in for its parameters."""
    return "sqlite: " + re.sub(r"'(?:[^']|'')*'|\bX'[0-9A-F]*'|\b\d+(?:\.\d+)?\b", "?", sql)


@contextmanager
def database_work(database: Database) -> Iterator[list[str]]:
    """The statements and transaction ends run meanwhile, without their parameters."""
    seen: list[str] = []

    def statement(*args: Any) -> None:
        seen.append(args[2])

    def traced(sql: str) -> None:
        if not sql.startswith("PRAGMA"):  # the WAL checkpointer's, on its own schedule
            seen.append(_shape(sql))

    def checkout(dbapi_connection: Any, *_: Any) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.set_trace_callback(traced)

    def checkin(dbapi_connection: Any, *_: Any) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.set_trace_callback(None)

    listeners = [
        (database.engine, "before_cursor_execute", statement),
        (database.engine, "commit", lambda *_: seen.append("COMMIT")),
        (database.engine, "rollback", lambda *_: seen.append("ROLLBACK")),
        (database.engine.pool, "checkout", checkout),
        (database.engine.pool, "checkin", checkin),
    ]
    for target, name, listener in listeners:
        event.listen(target, name, listener)
    try:
        yield seen
    finally:
        for target, name, listener in listeners:
            event.remove(target, name, listener)


def writes(statements: list[str]) -> list[str]:
    """The transaction ends and the statements that write, in order: what costs milliseconds
    (a commit, an audit row with its chain), unlike one more read by primary key."""
    kinds = ("INSERT", "UPDATE", "DELETE", "COMMIT", "ROLLBACK", "BEGIN")
    return [s for s in statements if s.removeprefix("sqlite: ").lstrip().upper().startswith(kinds)]
