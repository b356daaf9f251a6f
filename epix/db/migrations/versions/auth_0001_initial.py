"""People, roles and API keys.

Revision ID: auth_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from epix.db.base import UTCDateTime

revision = "auth_0001"
down_revision = None
branch_labels = ("auth",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auth_users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(150), nullable=False),
        sa.Column("full_name", sa.String(200), nullable=True),
        sa.Column("party", sa.String(8), nullable=False),
        sa.Column("authority", sa.String(200), nullable=False),
        sa.Column("roles", sa.String(200), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("disabled_at", UTCDateTime(), nullable=True),
        sa.Column("removed_at", UTCDateTime(), nullable=True),
        sa.Column("auth_epoch", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_auth_users"),
        sa.UniqueConstraint("username", name="uq_auth_users_username"),
    )
    op.create_index("ix_auth_users_party", "auth_users", ["party"])
    op.create_table(
        "auth_api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("prefix", sa.String(32), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("label", sa.String(200), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["auth_users.id"], name="fk_auth_api_keys_user_id_auth_users"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_auth_api_keys"),
        sa.UniqueConstraint("prefix", name="uq_auth_api_keys_prefix"),
    )
    op.create_index("ix_auth_api_keys_user_id", "auth_api_keys", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_auth_api_keys_user_id", table_name="auth_api_keys")
    op.drop_table("auth_api_keys")
    op.drop_index("ix_auth_users_party", table_name="auth_users")
    op.drop_table("auth_users")
