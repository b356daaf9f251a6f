"""A database error's text never carries the values of the statement that failed.

The node logs an unexpected SQLAlchemy error with its traceback, and SQLAlchemy's text repeats
the statement's parameters: a user's password hash, a permit's content. Both ways the node
runs statements (the ORM's ``Session.execute`` and ``Prepared`` on the DBAPI cursor) are checked.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from epix.auth.models import User
from epix.db import Database
from epix.db.prepared import Prepared

_SECRET = "argon2-hash-that-must-not-reach-a-log"
_ROW = {
    "username": "ana",
    "party": "XA",
    "authority": "XA Management Authority",
    "roles": "management_authority",
    "password_hash": _SECRET,
    "created_at": datetime(2026, 12, 7, tzinfo=UTC),
    "auth_epoch": 0,
}


def test_a_failed_statement_is_reported_without_its_parameters(database: Database) -> None:
    with database.unit_of_work() as session:
        session.execute(insert(User), _ROW)
    refused = []
    with pytest.raises(IntegrityError) as by_orm, database.unit_of_work() as session:
        session.execute(insert(User), _ROW)  # the same user name again
    refused.append(by_orm.value)
    with pytest.raises(IntegrityError) as by_cursor, database.unit_of_work() as session:
        Prepared(insert(User)).execute(session, _ROW)
    refused.append(by_cursor.value)
    for error in refused:
        assert "auth_users" in str(error)  # the statement is still named
        assert _SECRET not in str(error)
        assert "parameters hidden" in str(error)
