"""exchange: messages, receipts, permits, permit lines, watchers, inbox entries.

Revision ID: exchange_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from epix.db.base import UTCDateTime

revision = "exchange_0001"
down_revision = None
branch_labels = ("exchange",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sender_party", sa.String(8), nullable=False),
        sa.Column("message_id", sa.String(128), nullable=False),
        sa.Column("recipient_party", sa.String(8), nullable=False),
        sa.Column("document_type", sa.String(32), nullable=False),
        sa.Column("conversation_id", sa.String(128), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("delivery_state", sa.String(16), nullable=False),
        sa.Column("delivery_detail", sa.Text(), nullable=True),
        sa.Column("submitted_by", sa.String(150), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
        sa.UniqueConstraint(
            "sender_party", "message_id", name="uq_messages_sender_party_message_id"
        ),
    )
    op.create_index("ix_messages_recipient_party", "messages", ["recipient_party"])

    op.create_table(
        "receipts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_pk", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("codes", sa.Text(), nullable=False),
        sa.Column("issued_at", UTCDateTime(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_pk"], ["messages.id"], name="fk_receipts_message_pk_messages"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_receipts"),
        sa.UniqueConstraint("message_pk", name="uq_receipts_message_pk"),
    )

    op.create_table(
        "permits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issuing_party", sa.String(8), nullable=False),
        sa.Column("number", sa.String(64), nullable=False),
        sa.Column("document_type", sa.String(4), nullable=False),
        sa.Column("recipient_party", sa.String(8), nullable=False),
        sa.Column("message_pk", sa.Integer(), nullable=False),
        sa.Column("signed_sha256", sa.String(64), nullable=False),
        sa.Column("security_token_sha256", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("valid_from", UTCDateTime(), nullable=True),
        sa.Column("valid_until", UTCDateTime(), nullable=True),
        sa.Column("replaced_by_id", sa.Integer(), nullable=True),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("status_changed_at", UTCDateTime(), nullable=True),
        sa.Column("signer_fingerprint", sa.String(64), nullable=True),
        sa.Column("signer_subject", sa.Text(), nullable=True),
        sa.Column("compliance_codes", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_pk"], ["messages.id"], name="fk_permits_message_pk_messages"
        ),
        sa.ForeignKeyConstraint(
            ["replaced_by_id"], ["permits.id"], name="fk_permits_replaced_by_id_permits"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_permits"),
        sa.UniqueConstraint("issuing_party", "number", name="uq_permits_issuing_party_number"),
    )

    op.create_table(
        "permit_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("permit_id", sa.Integer(), nullable=False),
        sa.Column("line_id", sa.String(64), nullable=False),
        sa.Column("permitted_quantity", sa.Numeric(20, 6), nullable=False),
        sa.Column("unit", sa.String(16), nullable=True),
        sa.Column("appendix", sa.String(8), nullable=True),
        sa.Column("taxon", sa.String(300), nullable=True),
        sa.ForeignKeyConstraint(
            ["permit_id"], ["permits.id"], name="fk_permit_lines_permit_id_permits"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_permit_lines"),
        sa.UniqueConstraint("permit_id", "line_id", name="uq_permit_lines_permit_id_line_id"),
    )

    op.create_table(
        "permit_watchers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("permit_id", sa.Integer(), nullable=False),
        sa.Column("party", sa.String(8), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("since", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["permit_id"], ["permits.id"], name="fk_permit_watchers_permit_id_permits"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_permit_watchers"),
        sa.UniqueConstraint("permit_id", "party", name="uq_permit_watchers_permit_id_party"),
    )

    op.create_table(
        "inbox_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("recipient_party", sa.String(8), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message_pk", sa.Integer(), nullable=True),
        sa.Column("subject", sa.String(300), nullable=True),
        sa.Column("payload", sa.LargeBinary(), nullable=True),
        sa.Column("content_type", sa.String(100), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
        sa.Column("pull_count", sa.Integer(), nullable=False),
        sa.Column("acknowledged_at", UTCDateTime(), nullable=True),
        sa.Column("acknowledged_by", sa.String(150), nullable=True),
        sa.ForeignKeyConstraint(
            ["message_pk"], ["messages.id"], name="fk_inbox_entries_message_pk_messages"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_inbox_entries"),
        sa.UniqueConstraint(
            "recipient_party", "message_pk", name="uq_inbox_entries_recipient_party_message_pk"
        ),
    )
    op.create_index(
        "ix_inbox_entries_pending",
        "inbox_entries",
        ["recipient_party", "acknowledged_at", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_inbox_entries_pending", table_name="inbox_entries")
    op.drop_table("inbox_entries")
    op.drop_table("permit_watchers")
    op.drop_table("permit_lines")
    op.drop_table("permits")
    op.drop_table("receipts")
    op.drop_index("ix_messages_recipient_party", table_name="messages")
    op.drop_table("messages")
