"""Exporting a period reads each event once: every batch is a range of the primary key."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event

from epix.audit.service import events_between, period_span
from epix.db import Database

from .conftest import fill


def test_export_of_a_period_searches_the_primary_key_and_never_sorts(
    sqlite_database: Database, no_auto_checkpoints: None
) -> None:
    """Filtered by time alone, SQLite took the time index, so each batch of 500 searched and
    sorted the whole period again: 80,000 events, 160 batches, 4.8 s (quadratic)."""
    fill(sqlite_database, 1200)
    statements: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "audit_events" in statement:
            statements.append((statement, parameters))

    event.listen(sqlite_database.engine, "before_cursor_execute", capture)
    try:
        with sqlite_database.read() as session:
            span = period_span(
                session,
                start=datetime(2000, 1, 1, tzinfo=UTC),
                end=datetime(2999, 1, 1, tzinfo=UTC),
            )
            assert span is not None
            exported = list(events_between(session, *span))
    finally:
        event.remove(sqlite_database.engine, "before_cursor_execute", capture)
    assert [e.sequence for e in exported] == list(range(1, 1201))
    batches = [(sql, params) for sql, params in statements if "LIMIT" in sql.upper()]
    assert len(batches) >= 3
    with sqlite_database.engine.connect() as connection:
        for sql, params in batches:
            plan = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall()
            details = " ".join(str(row[-1]) for row in plan)
            assert "TEMP B-TREE" not in details, details
            assert "ix_audit_events_occurred_at" not in details, details
