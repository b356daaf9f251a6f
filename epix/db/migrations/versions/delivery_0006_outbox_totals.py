"""Delivery: running totals of delivered and given-up outbox rows, for /metrics.

Started from the rows there are: every delivered row, and the failed ones (rows given up and
resent before this migration are not known any more).

Revision ID: delivery_0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "delivery_0006"
down_revision = "delivery_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "delivery_outbox_totals",
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("outcome", name="pk_delivery_outbox_totals"),
    )
    for outcome, state in (("delivered", "delivered"), ("given_up", "failed")):
        op.execute(
            sa.text(
                "INSERT INTO delivery_outbox_totals (outcome, count) "
                "SELECT :outcome, count(*) FROM delivery_outbox WHERE state = :state"
            ).bindparams(outcome=outcome, state=state)
        )


def downgrade() -> None:
    op.drop_table("delivery_outbox_totals")
