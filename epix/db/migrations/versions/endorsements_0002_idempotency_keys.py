"""endorsements: Idempotency-Key records of customs POSTs (reserve, confirm, endorse).

Revision ID: endorsements_0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from epix.db.base import UTCDateTime

revision = "endorsements_0002"
down_revision = "endorsements_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "endorsement_idempotency_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("party", sa.String(8), nullable=False),
        sa.Column("operation", sa.String(32), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("resource_id", sa.String(64), nullable=True),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_endorsement_idempotency_keys"),
        sa.UniqueConstraint(
            "party",
            "operation",
            "key",
            name="uq_endorsement_idempotency_keys_party_operation_key",
        ),
    )
    op.create_index(
        "ix_endorsement_idempotency_keys_expires_at",
        "endorsement_idempotency_keys",
        ["expires_at"],
    )


def downgrade() -> None:
    op.drop_index(
        "ix_endorsement_idempotency_keys_expires_at", table_name="endorsement_idempotency_keys"
    )
    op.drop_table("endorsement_idempotency_keys")
