"""Migrations and models agree: a migrated database has exactly the tables the models declare."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from epix.db import Base, Database
from epix.db.engine import MIGRATIONS_DIR, import_all_models
from epix.delivery.models import OutboxOutcome
from epix.delivery.outbox import totals


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


def test_outbox_totals_start_from_the_rows_already_there(tmp_path: Path) -> None:
    """A node upgraded with years of outbox rows reports them in its totals from the start."""
    database = Database(f"sqlite:///{tmp_path / 'epix.sqlite3'}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection_engine"] = database.engine
    command.upgrade(config, "delivery_0005")
    row = (
        "INSERT INTO delivery_outbox (dedupe_key, kind, message_id, sender_party, "
        "destination_party, peer_key, content_type, headers, payload, state, attempts, "
        "created_at, next_attempt_at, give_up_at, lease_version, resent_count) VALUES "
        "(:key, 'permit', 'm', 'XA', 'XB', 'XB', 'application/xml', '{}', x'00', :state, 1, "
        "'2026-01-01 00:00:00', '2026-01-01 00:00:00', '2026-01-04 00:00:00', 1, 0)"
    )
    states = ["delivered"] * 3 + ["failed"] * 2 + ["pending"]
    with database.engine.begin() as connection:
        for number, state in enumerate(states):
            connection.execute(text(row), {"key": f"k{number}", "state": state})
    database.migrate()
    with database.read() as session:
        assert totals(session) == {OutboxOutcome.DELIVERED: 3, OutboxOutcome.GIVEN_UP: 2}
    database.dispose()
