"""Delivery: outbox and webhook subscriptions.

Revision ID: delivery_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from epix.db.base import UTCDateTime

revision = "delivery_0001"
down_revision = None
branch_labels = ("delivery",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "delivery_outbox",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("dedupe_key", sa.String(400), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message_id", sa.String(200), nullable=False),
        sa.Column("sender_party", sa.String(8), nullable=False),
        sa.Column("destination_party", sa.String(8), nullable=False),
        sa.Column("target_url", sa.String(2000), nullable=True),
        sa.Column("subscription_id", sa.Integer(), nullable=True),
        sa.Column("peer_key", sa.String(300), nullable=False),
        sa.Column("content_type", sa.String(200), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("give_up_at", UTCDateTime(), nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_version", sa.Integer(), nullable=False),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
        sa.Column("last_error_code", sa.String(32), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("receipt", sa.LargeBinary(), nullable=True),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.Column("failed_at", UTCDateTime(), nullable=True),
        sa.Column("resent_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_delivery_outbox"),
        sa.UniqueConstraint("dedupe_key", name="uq_delivery_outbox_dedupe_key"),
    )
    op.create_index("ix_delivery_outbox_due", "delivery_outbox", ["state", "next_attempt_at"])
    op.create_index("ix_delivery_outbox_message_id", "delivery_outbox", ["message_id"])
    op.create_index("ix_delivery_outbox_sender_party", "delivery_outbox", ["sender_party"])

    op.create_table(
        "delivery_webhook_subscriptions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("party", sa.String(8), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("secret", sa.String(200), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("disabled_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_delivery_webhook_subscriptions"),
    )
    op.create_index(
        "ix_delivery_webhook_subscriptions_party", "delivery_webhook_subscriptions", ["party"]
    )


def downgrade() -> None:
    op.drop_table("delivery_webhook_subscriptions")
    op.drop_table("delivery_outbox")
