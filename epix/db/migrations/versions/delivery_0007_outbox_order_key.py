"""Delivery: rows about one permit to one Party go out in the order they were queued.

Revision ID: delivery_0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "delivery_0007"
down_revision = "delivery_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("delivery_outbox", sa.Column("order_key", sa.String(120), nullable=True))
    op.create_index(
        "ix_delivery_outbox_order",
        "delivery_outbox",
        ["order_key", "destination_party", "state"],
    )


def downgrade() -> None:
    op.drop_index("ix_delivery_outbox_order", table_name="delivery_outbox")
    with op.batch_alter_table("delivery_outbox") as batch:
        batch.drop_column("order_key")
