"""Delivery: an endorsement's wait for its permit is kept apart from the row's give-up time.

The wait (EPIX_OUTBOX_PERMIT_WAIT_SECONDS from the first EPIX-MSG-011 refusal) was written into
``give_up_at``, so it outlived the refusal. A row waiting now (EPIX-DLV-014) keeps its bound as
``permit_wait_until``; its give-up time, already shortened, cannot be told from a normal one.

Revision ID: delivery_0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from epix.db.base import UTCDateTime

revision = "delivery_0008"
down_revision = "delivery_0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("delivery_outbox", sa.Column("permit_wait_until", UTCDateTime(), nullable=True))
    op.execute(
        "UPDATE delivery_outbox SET permit_wait_until = give_up_at "
        "WHERE state = 'pending' AND last_error_code = 'EPIX-DLV-014'"
    )


def downgrade() -> None:
    with op.batch_alter_table("delivery_outbox") as batch:
        batch.drop_column("permit_wait_until")
