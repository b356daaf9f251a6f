"""Delivery: tracking looks an outbox row up by message id, sender and destination together.

Revision ID: delivery_0002
"""

from __future__ import annotations

from alembic import op

revision = "delivery_0002"
down_revision = "delivery_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_delivery_outbox_message_id", table_name="delivery_outbox")
    op.create_index(
        "ix_delivery_outbox_message",
        "delivery_outbox",
        ["message_id", "sender_party", "destination_party"],
    )


def downgrade() -> None:
    op.drop_index("ix_delivery_outbox_message", table_name="delivery_outbox")
    op.create_index("ix_delivery_outbox_message_id", "delivery_outbox", ["message_id"])
