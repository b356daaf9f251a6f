"""What a database failure means for whoever asked: the database is unreachable, saturated or
cannot store anything. Each is transient for the client (retry later), not a bug of the node,
so the API answers 503 with a code and ``Retry-After`` instead of a 500, and the background
threads wait and go on.

Anything else (an integrity or programming error, SQLite's "no such table") is no outage and
stays what it was.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass

from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

UNREACHABLE, SATURATED, CANNOT_STORE = "EPIX-DB-002", "EPIX-DB-003", "EPIX-DB-004"
# Seconds a client is asked to wait (Retry-After): a restart or failover takes a while, a
# queue of writers or a full pool drains quickly, a full disk needs an operator.
RETRY_AFTER_SECONDS = {UNREACHABLE: 10, SATURATED: 2, CANNOT_STORE: 60}

# PostgreSQL SQLSTATEs (Appendix A of its manual).
_PG_SATURATED = {
    "53300",  # too_many_connections
    "53400",  # configuration_limit_exceeded
    "55P03",  # lock_not_available
    "57014",  # query_canceled (statement or lock timeout)
    "40001",  # serialization_failure
    "40P01",  # deadlock_detected
}
_PG_CANNOT_STORE = {
    "53100",  # disk_full
    "25006",  # read_only_sql_transaction: a standby after failover, default_transaction_read_only
    "58030",  # io_error
}
# A connection refused at start-up may carry no SQLSTATE, only the server's message.
_PG_FULL_MESSAGES = ("too many clients", "remaining connection slots are reserved")
# SQLite reports these as OperationalError by message only (the driver has no error code here).
_SQLITE_SATURATED = ("database is locked", "database table is locked", "database schema is locked")
_SQLITE_CANNOT_STORE = ("database or disk is full", "readonly database", "disk i/o error")
_SQLITE_UNREACHABLE = ("unable to open database file",)


@dataclass(frozen=True, slots=True)
class DatabaseTrouble:
    """An outage as the client should hear of it: the code, and how long to wait."""

    code: str

    @property
    def retry_after_seconds(self) -> int:
        return RETRY_AFTER_SECONDS[self.code]


def database_trouble(exc: BaseException) -> DatabaseTrouble | None:
    """The outage ``exc`` reports, or None when it is no outage (a bug, a refused value)."""
    if isinstance(exc, PoolTimeoutError):  # the pool, or the SQLite write turn, stayed full
        return DatabaseTrouble(SATURATED)
    if not isinstance(exc, DBAPIError):
        return None
    message = _first_line(exc.orig).lower()
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if isinstance(exc.orig, sqlite3.Error):
        for code, needles in (
            (SATURATED, _SQLITE_SATURATED),
            (CANNOT_STORE, _SQLITE_CANNOT_STORE),
            (UNREACHABLE, _SQLITE_UNREACHABLE),
        ):
            if any(needle in message for needle in needles):
                return DatabaseTrouble(code)
        return DatabaseTrouble(UNREACHABLE) if exc.connection_invalidated else None
    if sqlstate in _PG_SATURATED or any(needle in message for needle in _PG_FULL_MESSAGES):
        return DatabaseTrouble(SATURATED)
    if sqlstate in _PG_CANNOT_STORE:
        return DatabaseTrouble(CANNOT_STORE)
    if exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError):
        return DatabaseTrouble(UNREACHABLE)
    return None


def driver_message(exc: BaseException, url: str) -> str:
    """The first line of the driver's own message, with the URL's password masked.

    SQLAlchemy's message adds the statement and its values, which may be credentials (a key
    hash, a password hash) and are never logged; the driver's names at most host, port, user.
    """
    summary = _first_line(exc.orig if isinstance(exc, DBAPIError) else exc) or type(exc).__name__
    try:
        password = make_url(url).password
    except ArgumentError:
        return summary
    return summary.replace(str(password), "***") if password else summary


def _first_line(error: BaseException | None) -> str:
    lines = str(error or "").strip().splitlines()
    return lines[0].strip() if lines else ""


class OutageLog:
    """For a background loop (outbox worker, registry follower) that retries every few
    seconds: one warning when the database goes out, one line when it is back, nothing at each
    retry in between; any other failure is no outage and the caller logs it as it did."""

    def __init__(self, log: logging.Logger, loop: str, url: str) -> None:
        self._log, self._loop, self._url = log, loop, url
        self._out = False

    def failed(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a database outage (logged, the first time)."""
        trouble = database_trouble(exc)
        if trouble is None:
            return False
        if not self._out:
            self._out = True
            self._log.warning(
                "%s: database unavailable (%s: %s); retrying until it answers",
                self._loop,
                trouble.code,
                driver_message(exc, self._url),
            )
        return True

    def succeeded(self) -> None:
        if self._out:
            self._out = False
            self._log.warning("%s: the database answers again; resumed", self._loop)
