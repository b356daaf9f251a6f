"""endorsements: signed endorsements, their lines, reservations and reservation lines.

Revision ID: endorsements_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from epix.db.base import UTCDateTime

revision = "endorsements_0001"
down_revision = None
branch_labels = ("endorsements",)
# permit_id / permit_line_id refer to exchange rows by id, without a cross-branch foreign key.
depends_on = None


def upgrade() -> None:
    op.create_table(
        "endorsement_reservations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reservation_id", sa.String(64), nullable=False),
        sa.Column("permit_id", sa.Integer(), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("party", sa.String(8), nullable=False),
        sa.Column("declaration_reference", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(150), nullable=False),
        sa.Column("closed_at", UTCDateTime(), nullable=True),
        sa.Column("closed_by", sa.String(150), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_endorsement_reservations"),
        sa.UniqueConstraint("reservation_id", name="uq_endorsement_reservations_reservation_id"),
    )
    op.create_index(
        "ix_endorsement_reservations_permit",
        "endorsement_reservations",
        ["permit_id", "status"],
    )
    op.create_table(
        "endorsement_reservation_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reservation_pk", sa.Integer(), nullable=False),
        sa.Column("permit_line_id", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Numeric(20, 6), nullable=False),
        sa.Column("unit", sa.String(16), nullable=False),
        sa.ForeignKeyConstraint(
            ["reservation_pk"],
            ["endorsement_reservations.id"],
            name="fk_endorsement_reservation_lines_reservation",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_endorsement_reservation_lines"),
        sa.UniqueConstraint(
            "reservation_pk",
            "permit_line_id",
            name="uq_endorsement_reservation_lines_reservation_pk_permit_line_id",
        ),
    )
    op.create_table(
        "endorsements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("endorsement_id", sa.String(64), nullable=False),
        sa.Column("permit_id", sa.Integer(), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("endorsing_party", sa.String(8), nullable=False),
        sa.Column("authority", sa.String(200), nullable=False),
        sa.Column("officer", sa.String(200), nullable=False),
        sa.Column("port", sa.String(5), nullable=False),
        sa.Column("endorsed_on", sa.Date(), nullable=False),
        sa.Column("transport_document", sa.String(200), nullable=False),
        sa.Column("declaration_reference", sa.String(200), nullable=True),
        sa.Column("reservation_id", sa.Integer(), nullable=True),
        sa.Column("document", sa.LargeBinary(), nullable=False),
        sa.Column("document_sha256", sa.String(64), nullable=False),
        sa.Column("signed_by", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(150), nullable=False),
        sa.ForeignKeyConstraint(
            ["reservation_id"],
            ["endorsement_reservations.id"],
            name="fk_endorsements_reservation_id_endorsement_reservations",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_endorsements"),
        sa.UniqueConstraint("endorsement_id", name="uq_endorsements_endorsement_id"),
        sa.UniqueConstraint("permit_id", "side", name="uq_endorsements_permit_id_side"),
    )
    op.create_table(
        "endorsement_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("endorsement_pk", sa.Integer(), nullable=False),
        sa.Column("permit_line_id", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Numeric(20, 6), nullable=False),
        sa.Column("unit", sa.String(16), nullable=False),
        sa.ForeignKeyConstraint(
            ["endorsement_pk"],
            ["endorsements.id"],
            name="fk_endorsement_lines_endorsement_pk_endorsements",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_endorsement_lines"),
        sa.UniqueConstraint(
            "endorsement_pk",
            "permit_line_id",
            name="uq_endorsement_lines_endorsement_pk_permit_line_id",
        ),
    )


def downgrade() -> None:
    op.drop_table("endorsement_lines")
    op.drop_table("endorsements")
    op.drop_table("endorsement_reservation_lines")
    op.drop_index("ix_endorsement_reservations_permit", table_name="endorsement_reservations")
    op.drop_table("endorsement_reservations")
