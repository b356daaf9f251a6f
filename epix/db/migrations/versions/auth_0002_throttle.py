"""Login and refused-credential throttle counts, shared by every worker process.

Revision ID: auth_0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "auth_0002"
down_revision = "auth_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auth_throttle",
        sa.Column("key", sa.String(400), nullable=False),
        sa.Column("attempts", sa.String(4000), nullable=False),
        sa.Column("forget_at", sa.Float(), nullable=False),
        sa.Column("throttled_since", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("key", name="pk_auth_throttle"),
    )
    op.create_index("ix_auth_throttle_forget_at", "auth_throttle", ["forget_at"])


def downgrade() -> None:
    op.drop_index("ix_auth_throttle_forget_at", table_name="auth_throttle")
    op.drop_table("auth_throttle")
