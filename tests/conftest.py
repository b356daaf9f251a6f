"""Shared fixtures: fresh migrated databases on SQLite and, where configured, PostgreSQL.

In CI ``EPIX_REQUIRE_REAL_PARTS=1`` turns every would-be skip for a missing xmlsec1,
PostgreSQL or Chromium into a failure: those tests must run there.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from epix.db import Database

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_REFERENCE = REPO_ROOT.parent / "shared" / "reference"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
POSTGRES_URL = os.environ.get("EPIX_TEST_POSTGRES_URL")
REQUIRE_REAL_PARTS = os.environ.get("EPIX_REQUIRE_REAL_PARTS") == "1"


def need(condition: bool, what: str) -> None:
    """Skip locally when a real part is missing; fail in CI, where it must be there."""
    if condition:
        return
    if REQUIRE_REAL_PARTS:
        pytest.fail(f"{what} is required in CI but is not available")
    pytest.skip(f"{what} not available")


def need_command(name: str) -> str:
    path = shutil.which(name)
    need(path is not None, f"the {name} command")
    assert path is not None
    return path


@pytest.fixture
def sqlite_database(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'epix.sqlite3'}")
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def postgres_database() -> Iterator[Database]:
    need(POSTGRES_URL is not None, "PostgreSQL (EPIX_TEST_POSTGRES_URL)")
    assert POSTGRES_URL is not None
    name = f"epix_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    database = Database(url)
    try:
        database.migrate()
        yield database
    finally:
        database.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest) -> Database:
    """A fresh migrated database; tests using it run once per backend."""
    fixture = "sqlite_database" if request.param == "sqlite" else "postgres_database"
    db: Database = request.getfixturevalue(fixture)
    return db
