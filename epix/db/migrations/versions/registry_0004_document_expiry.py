"""Registry: the signed expiry of each registry document held (freeze-attack defence).

Revision ID: registry_0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "registry_0004"
down_revision = "registry_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "registry_documents", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("registry_documents") as batch:
        batch.drop_column("expires_at")
