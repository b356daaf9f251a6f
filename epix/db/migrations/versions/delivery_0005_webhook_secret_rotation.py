"""Delivery: a webhook subscription's previous secret, still signed with after a rotation.

Revision ID: delivery_0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from epix.db.base import UTCDateTime

revision = "delivery_0005"
down_revision = "delivery_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "delivery_webhook_subscriptions",
        sa.Column("previous_secret", sa.String(200), nullable=True),
    )
    op.add_column(
        "delivery_webhook_subscriptions",
        sa.Column("previous_secret_until", UTCDateTime(), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("delivery_webhook_subscriptions", "previous_secret_until")
    op.drop_column("delivery_webhook_subscriptions", "previous_secret")
