"""Delivery: a sender's outbox listing filtered by state is one index range.

Revision ID: delivery_0003
"""

from __future__ import annotations

from alembic import op

revision = "delivery_0003"
down_revision = "delivery_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_delivery_outbox_sender_state", "delivery_outbox", ["sender_party", "state"]
    )


def downgrade() -> None:
    op.drop_index("ix_delivery_outbox_sender_state", table_name="delivery_outbox")
