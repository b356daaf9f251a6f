"""Registry: a follower's last check of its source, for /metrics in every web process.

Revision ID: registry_0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "registry_0003"
down_revision = "registry_0002"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "registry_source_checks",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("source_url", sa.String(2000), nullable=False),
        sa.Column("checked_at", _TS, nullable=False),
        sa.Column("failure_code", sa.String(32), nullable=True),
        sa.Column("confirmed_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_registry_source_checks"),
    )


def downgrade() -> None:
    op.drop_table("registry_source_checks")
