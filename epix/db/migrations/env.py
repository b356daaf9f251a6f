"""Alembic environment: runs against the engine that ``Database.migrate`` passes in."""

from __future__ import annotations

from alembic import context

from epix.db.base import Base
from epix.db.engine import import_all_models, without_statement_timeout

import_all_models()
engine = context.config.attributes["connection_engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        without_statement_timeout(connection)
        context.run_migrations()
    connection.commit()
