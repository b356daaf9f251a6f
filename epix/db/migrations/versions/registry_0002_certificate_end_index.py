"""Registry: certificates ending soon are one index range (/metrics counts them every scrape).

Revision ID: registry_0002
"""

from __future__ import annotations

from alembic import op

revision = "registry_0002"
down_revision = "registry_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_registry_certificates_not_after", "registry_certificates", ["not_after"])


def downgrade() -> None:
    op.drop_index("ix_registry_certificates_not_after", table_name="registry_certificates")
