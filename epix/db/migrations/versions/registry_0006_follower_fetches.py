"""Registry: which followers fetched the registry document, identifying themselves.

Revision ID: registry_0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "registry_0006"
down_revision = "registry_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registry_follower_fetches",
        sa.Column("party", sa.String(8), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("anchor_fingerprint", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("party", name="pk_registry_follower_fetches"),
    )


def downgrade() -> None:
    op.drop_table("registry_follower_fetches")
