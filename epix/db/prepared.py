"""Prebuilt Core statements run straight on the DBAPI cursor of a session's connection.

``Session.execute`` of a prebuilt statement costs 12-20 us of SQLAlchemy machinery (session
checks, execution context, parameter construction, event dispatch, result metadata) around a
DBAPI call of 1-3 us, and the submit pipeline runs about fifteen of them per submission.
``Prepared`` compiles its statement once per dialect and keeps what SQLAlchemy would use to run
it: the SQL string, the bind names in order, each bind's and each result column's type
processors (``TypeDecorator``s included). Running it is then the cursor call plus those
processors, inside the session's transaction and on its connection, so it sees and is committed
or rolled back with everything else the session does. Like ``Session.execute`` of a Core
statement it does not autoflush.

What it does not do, it refuses when compiling: statements with Python-side column defaults
(SQLAlchemy computes those per execution), expanding ``IN`` parameters (rendered per execution)
and bind names the driver would need escaped.
Driver errors are raised as SQLAlchemy's exceptions (``IntegrityError`` and so on); a lost
connection invalidates the pool, as ``Session.execute`` would. The engine's ``echo`` log does not
show these statements.
"""

from __future__ import annotations

import weakref
from collections import namedtuple
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Insert
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError, MultipleResultsFound
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

_Processor = Callable[[Any], Any] | None


@dataclass(slots=True)
class _Plan:
    """One statement compiled for one dialect, with its type processors."""

    sql: str
    names: tuple[str, ...]
    values: dict[str, Any]
    processors: tuple[_Processor, ...]
    positional: bool
    make_row: Callable[[Iterable[Any]], tuple[Any, ...]] | None
    column_types: tuple[Any, ...]
    # (column index, processor) for the columns that have one; found on the first fetch.
    result_processors: list[tuple[int, Callable[[Any], Any]]] | None = field(default=None)

    def parameters(self, params: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        values = [params[name] if name in params else self.values[name] for name in self.names]
        converted = [
            value if process is None else process(value)
            for value, process in zip(values, self.processors, strict=True)
        ]
        if self.positional:
            return converted
        return dict(zip(self.names, converted, strict=True))

    def rows(self, dialect: Dialect, cursor: Any) -> list[Any]:
        assert self.make_row is not None
        if self.result_processors is None:
            # The driver's type codes pick some processors (PostgreSQL numerics); they are the
            # same for every execution of one statement.
            processors = [
                type_.dialect_impl(dialect).result_processor(dialect, column[1])
                for type_, column in zip(self.column_types, cursor.description, strict=True)
            ]
            self.result_processors = [
                (index, process) for index, process in enumerate(processors) if process
            ]
        make, processed = self.make_row, self.result_processors
        rows = []
        for raw in cursor.fetchall():
            if processed:
                raw = list(raw)
                for index, process in processed:
                    raw[index] = process(raw[index])
            rows.append(make(raw))
        return rows


class Prepared:
    """A Core statement compiled once per dialect, run on the session's DBAPI connection.

    An INSERT is compiled for the columns its parameters name (once per set of names), as
    ``Session.execute`` would; other statements take their values through ``bindparam``.
    """

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._by_columns = isinstance(statement, Insert)
        self._plans: weakref.WeakKeyDictionary[Dialect, dict[tuple[str, ...], _Plan]] = (
            weakref.WeakKeyDictionary()
        )

    def execute(
        self, session: Session | Connection, params: Mapping[str, Any] | None = None
    ) -> None:
        """Run the statement once; nothing is fetched. (A ``Connection`` serves too: the
        engine's ``begin`` hook runs before any session has a connection to give.)"""
        self._cursor(session, params or {}, many=False)[2].close()

    def execute_many(self, session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run the statement once per parameter set in one driver call (``executemany``)."""
        if rows:
            self._cursor(session, rows, many=True)[2].close()

    def all(self, session: Session, params: Mapping[str, Any] | None = None) -> list[Any]:
        """Every result row, as named tuples (attribute and index access, like a ``Row``)."""
        dialect, plan, cursor = self._cursor(session, params or {}, many=False)
        try:
            return plan.rows(dialect, cursor)
        finally:
            cursor.close()

    def first(self, session: Session, params: Mapping[str, Any] | None = None) -> Any:
        """The only result row, or ``None`` (more than one is an error, as ``one_or_none``)."""
        rows = self.all(session, params)
        if len(rows) > 1:
            raise MultipleResultsFound(f"expected at most one row, got {len(rows)}")
        return rows[0] if rows else None

    def scalar(self, session: Session, params: Mapping[str, Any] | None = None) -> Any:
        """The first column of the only result row, or ``None`` when there is no row."""
        row = self.first(session, params)
        return None if row is None else row[0]

    def _cursor(
        self, session: Session | Connection, params: Any, *, many: bool
    ) -> tuple[Dialect, _Plan, Any]:
        """Execute on a new cursor of the session's connection and return it, unfetched."""
        connection = _connection_of(session)
        dialect = connection.dialect
        plan = self._plan(dialect, params[0] if many else params)
        parameters: Any = (
            [plan.parameters(row) for row in params] if many else plan.parameters(params)
        )
        dbapi_connection = connection.connection.dbapi_connection
        assert dbapi_connection is not None
        cursor = dbapi_connection.cursor()
        try:
            if many:
                cursor.executemany(plan.sql, parameters)
            else:
                cursor.execute(plan.sql, parameters)
        except dialect.loaded_dbapi.Error as error:
            cursor.close()
            lost = dialect.is_disconnect(error, dbapi_connection, cursor)
            if lost:
                # As Connection does for Session.execute: every pooled connection made before
                # now is dropped too (the server cut them all, as a rule), so the requests
                # after this one connect afresh instead of each meeting a dead one.
                connection.engine.pool._invalidate(connection.connection, error)
                connection.invalidate(error)
            raise DBAPIError.instance(
                plan.sql,
                parameters,
                error,
                dialect.loaded_dbapi.Error,
                hide_parameters=connection.engine.hide_parameters,
                connection_invalidated=lost,
                dialect=dialect,
                ismulti=many,
            ) from error
        return dialect, plan, cursor

    def _plan(self, dialect: Dialect, params: Mapping[str, Any]) -> _Plan:
        keys = tuple(params) if self._by_columns else ()
        plans = self._plans.get(dialect)
        if plans is None:
            plans = self._plans[dialect] = {}
        plan = plans.get(keys)
        if plan is None:
            plan = plans[keys] = self._compile(dialect, keys)
        return plan

    def _compile(self, dialect: Dialect, keys: tuple[str, ...]) -> _Plan:
        compiled = self.statement.compile(dialect=dialect, column_keys=list(keys) or None)
        assert isinstance(compiled, SQLCompiler)
        if compiled.insert_prefetch or compiled.update_prefetch:
            raise TypeError(f"{self.statement} has Python-side defaults; use Session.execute")
        if compiled.post_compile_params:
            raise TypeError(f"{self.statement} has expanding (IN) parameters; use Session.execute")
        if compiled.escaped_bind_names:
            raise TypeError(f"{self.statement} has bind names the driver needs escaped")
        names = tuple(compiled.positiontup or ()) if dialect.positional else tuple(compiled.binds)
        binds = [compiled.binds[name] for name in names]
        columns = list(getattr(self.statement, "exported_columns", ()))
        make_row = None
        if columns:
            row_type: Any = namedtuple("Row", [column.key for column in columns])  # type: ignore[misc]
            make_row = row_type._make
        return _Plan(
            sql=compiled.string,
            names=names,
            values={
                name: bind.effective_value
                for name, bind in zip(names, binds, strict=True)
                if not bind.required
            },
            processors=tuple(
                bind.type.dialect_impl(dialect).bind_processor(dialect) for bind in binds
            ),
            positional=dialect.positional,
            make_row=make_row,
            column_types=tuple(column.type for column in columns),
        )


def _connection_of(target: Session | Connection) -> Connection:
    """The connection to run on, inside a transaction.

    A session bound to a connection that is already in a transaction (``Database.read`` begins
    it; a unit of work once its session has begun) runs on it directly: going through
    ``Session.connection()`` would make a read-only session set up its own transaction
    bookkeeping (~15 us). Otherwise the session provides (and if need be begins) one.
    """
    if isinstance(target, Connection):
        return target
    bind = target.bind
    if isinstance(bind, Connection) and bind.in_transaction():
        return bind
    return target.connection()
