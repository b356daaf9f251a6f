"""Registry: rotating the Secretariat's signing certificate (announcement chain, follower anchors).

Revision ID: registry_0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "registry_0005"
down_revision = "registry_0004"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column(
        "registry_documents", sa.Column("signer_fingerprint", sa.String(64), nullable=True)
    )
    op.create_table(
        "registry_anchor_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("signer_fingerprint", sa.String(64), nullable=False),
        sa.Column("next_fingerprint", sa.String(64), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("announced_at", _TS, nullable=False),
        sa.Column("announced_by", sa.String(150), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_registry_anchor_links"),
        sa.UniqueConstraint("next_fingerprint", name="uq_registry_anchor_links_next_fingerprint"),
    )
    op.create_table(
        "registry_anchors",
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("pem", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("registry_version", sa.Integer(), nullable=False),
        sa.Column("changed_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("fingerprint", name="pk_registry_anchors"),
    )


def downgrade() -> None:
    op.drop_table("registry_anchors")
    op.drop_table("registry_anchor_links")
    with op.batch_alter_table("registry_documents") as batch:
        batch.drop_column("signer_fingerprint")
