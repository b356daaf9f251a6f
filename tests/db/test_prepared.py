"""``Prepared`` statements store and read what ``Session.execute`` does, in its transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    Date,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    bindparam,
    create_engine,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError, MultipleResultsFound, OperationalError

from epix.db import Database
from epix.db import engine as db_engine
from epix.db.base import UTCDateTime
from epix.db.prepared import Prepared
from epix.delivery.models import OutboxMessage
from tests.conftest import POSTGRES_URL

_METADATA = MetaData()
_ITEMS = Table(
    "prepared_items",
    _METADATA,
    Column("id", Integer, primary_key=True),
    Column("name", String(40), unique=True, nullable=False),
    Column("body", LargeBinary),
    Column("at", UTCDateTime()),
    Column("day", Date),
    Column("amount", Numeric(20, 6)),
    Column("flag", Boolean),
)
_INSERT = Prepared(insert(_ITEMS).returning(_ITEMS.c.id))
_INSERT_PLAIN = Prepared(insert(_ITEMS))
_BY_NAME = select(_ITEMS).where(_ITEMS.c.name == bindparam("name"))
_ALL = select(_ITEMS.c.name, _ITEMS.c.amount).order_by(_ITEMS.c.id)
_RENAME = update(_ITEMS).where(_ITEMS.c.id == bindparam("item")).values(name=bindparam("new"))

_ROW = {
    "name": "first",
    "body": b"\x00\xffbytes",
    "at": datetime(2026, 3, 1, 12, 30, 15, 123000, tzinfo=timezone(timedelta(hours=2))),
    "day": date(2031, 2, 28),
    "amount": Decimal("12.500000"),
    "flag": True,
}


@pytest.fixture
def items(database: Database) -> Iterator[Database]:
    _METADATA.create_all(database.engine)
    yield database
    _METADATA.drop_all(database.engine)


def test_a_row_stored_and_read_through_prepared_is_the_one_session_execute_sees(
    items: Database,
) -> None:
    with items.unit_of_work() as session:
        item_id = _INSERT.scalar(session, _ROW)
        _INSERT_PLAIN.execute(session, {"name": "nulls"})
    with items.read() as session:
        expected = session.execute(_BY_NAME, {"name": "first"}).one()
        row = Prepared(_BY_NAME).first(session, {"name": "first"})
        nulls = Prepared(_BY_NAME).first(session, {"name": "nulls"})
    assert tuple(row) == tuple(expected)
    assert row.id == item_id
    assert row.at == datetime(2026, 3, 1, 10, 30, 15, 123000, tzinfo=UTC)
    assert row.at.tzinfo is not None and row.amount == Decimal("12.5") and row.flag is True
    assert (row.body, row.day) == (b"\x00\xffbytes", date(2031, 2, 28))
    assert tuple(nulls)[2:] == (None, None, None, None, None)


def test_it_runs_inside_the_sessions_transaction(items: Database) -> None:
    with pytest.raises(RuntimeError), items.unit_of_work() as session:
        _INSERT.execute(session, _ROW)
        assert session.execute(_BY_NAME, {"name": "first"}).one().name == "first"
        raise RuntimeError("roll back")
    with items.read() as session:
        assert Prepared(_BY_NAME).first(session, {"name": "first"}) is None


def test_many_rows_an_update_and_the_scalar_helpers(items: Database) -> None:
    names = [f"n{i}" for i in range(5)]
    with items.unit_of_work() as session:
        _INSERT_PLAIN.execute_many(
            session, [{"name": name, "amount": Decimal(i)} for i, name in enumerate(names)]
        )
        _INSERT_PLAIN.execute_many(session, [])
        first_id = session.execute(select(_ITEMS.c.id).where(_ITEMS.c.name == "n0")).scalar()
        Prepared(_RENAME).execute(session, {"item": first_id, "new": "renamed"})
    with items.read() as session:
        rows = Prepared(_ALL).all(session)
        assert [row.name for row in rows] == ["renamed", *names[1:]]
        assert [row[1] for row in rows] == [Decimal(i) for i in range(5)]
        assert Prepared(select(_ITEMS.c.name).where(_ITEMS.c.id == -1)).scalar(session) is None
        with pytest.raises(MultipleResultsFound):
            Prepared(_ALL).first(session)


def test_a_duplicate_is_sqlalchemys_integrity_error_and_the_rest_rolls_back(
    items: Database,
) -> None:
    with items.unit_of_work() as session:
        _INSERT.execute(session, _ROW)
    with pytest.raises(IntegrityError), items.unit_of_work() as session:
        _INSERT.execute(session, {"name": "second"})
        _INSERT.execute(session, _ROW)
    with items.read() as session:
        assert [row.name for row in Prepared(_ALL).all(session)] == ["first"]


def test_statements_with_python_side_defaults_are_refused(items: Database) -> None:
    outbox = OutboxMessage.__table__
    with items.unit_of_work() as session, pytest.raises(TypeError, match="Python-side"):
        Prepared(insert(outbox)).execute(session, {"kind": "permit"})


def test_statements_with_expanding_in_parameters_are_refused(items: Database) -> None:
    names = select(_ITEMS.c.id).where(_ITEMS.c.name.in_(bindparam("names", expanding=True)))
    with items.read() as session, pytest.raises(TypeError, match="expanding"):
        Prepared(names).all(session, {"names": ["first", "second"]})


def test_after_a_commit_inside_a_unit_of_work_it_runs_in_the_next_transaction(
    items: Database,
) -> None:
    with pytest.raises(RuntimeError), items.unit_of_work() as session:
        _INSERT.execute(session, _ROW)
        session.commit()  # as a refused registry change does, to keep its audit event
        _INSERT.execute(session, {"name": "after the commit"})
        raise RuntimeError("roll back")
    with items.read() as session:
        assert [row.name for row in Prepared(_ALL).all(session)] == ["first"]
        assert session.execute(select(_ITEMS.c.name)).scalars().all() == ["first"]


@pytest.mark.postgres
def test_a_lost_connection_drops_the_whole_pool(
    postgres_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the server cuts every session (a restart, a failover, an operator's
    pg_terminate_backend), the first statement that meets a dead connection invalidates the
    pool, as Session.execute does: the next ones connect afresh instead of each meeting
    another dead pooled connection and failing in turn."""
    monkeypatch.setattr(
        db_engine, "PING_AFTER_IDLE_SECONDS", 3600.0
    )  # no ping: statements find out
    count_rows = Prepared(select(func.count().label("n")).select_from(OutboxMessage.__table__))
    with ExitStack() as stack:  # four connections in the pool
        for _ in range(4):
            stack.enter_context(postgres_database.read())
    admin = create_engine(POSTGRES_URL or "", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": postgres_database.engine.url.database},
            )
    finally:
        admin.dispose()
    failures = 0
    for _ in range(4):
        try:
            with postgres_database.read() as session:
                assert count_rows.scalar(session) == 0
        except OperationalError as exc:
            assert exc.connection_invalidated
            failures += 1
    assert failures == 1
