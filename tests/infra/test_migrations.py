"""Migrations and models agree: a migrated database has exactly the tables the models declare."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from epix.db import Base, Database
from epix.db.engine import MIGRATIONS_DIR, import_all_models


def test_migrated_schema_matches_models(database: Database) -> None:
    import_all_models()
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection)
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_migrate_twice_reaches_every_branch_head(sqlite_database: Database) -> None:
    sqlite_database.migrate()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    expected = set(ScriptDirectory.from_config(config).get_heads())
    with sqlite_database.engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    assert current == expected
