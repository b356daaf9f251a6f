"""Delivery: a node admin's outbox listing of one state is one index range, newest first.

Revision ID: delivery_0004
"""

from __future__ import annotations

from alembic import op

revision = "delivery_0004"
down_revision = "delivery_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_delivery_outbox_state", "delivery_outbox", ["state"])


def downgrade() -> None:
    op.drop_index("ix_delivery_outbox_state", table_name="delivery_outbox")
