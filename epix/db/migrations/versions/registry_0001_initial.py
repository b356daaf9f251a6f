"""Registry: Parties, authorities, certificates, the version counter and published documents."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "registry_0001"
down_revision = None
branch_labels = ("registry",)
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "registry_parties",
        sa.Column("code", sa.String(8), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("endpoint_url", sa.String(2000), nullable=True),
        sa.Column("added_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("code", name="pk_registry_parties"),
    )
    op.create_table(
        "registry_authorities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("party_code", sa.String(8), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("contact", sa.String(500), nullable=True),
        sa.Column("added_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_registry_authorities"),
        sa.ForeignKeyConstraint(
            ["party_code"],
            ["registry_parties.code"],
            name="fk_registry_authorities_party_code_registry_parties",
        ),
        sa.UniqueConstraint(
            "party_code", "kind", "name", name="uq_registry_authorities_party_kind_name"
        ),
    )
    op.create_table(
        "registry_certificates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("authority_id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("pem", sa.Text(), nullable=False),
        sa.Column("subject", sa.String(500), nullable=False),
        sa.Column("not_before", _TS, nullable=False),
        sa.Column("not_after", _TS, nullable=False),
        sa.Column("roles", sa.String(200), nullable=False),
        sa.Column("added_by", sa.String(150), nullable=False),
        sa.Column("added_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
        sa.Column("revocation_reason", sa.String(500), nullable=True),
        sa.Column("revoked_by", sa.String(150), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_registry_certificates"),
        sa.ForeignKeyConstraint(
            ["authority_id"],
            ["registry_authorities.id"],
            name="fk_registry_certificates_authority_id_registry_authorities",
        ),
        sa.UniqueConstraint("fingerprint", name="uq_registry_certificates_fingerprint"),
    )
    op.create_index(
        "ix_registry_certificates_authority_id", "registry_certificates", ["authority_id"]
    )
    state = op.create_table(
        "registry_state",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_registry_state"),
    )
    # The one counter row exists from the start, so concurrent first changes only ever update it.
    op.bulk_insert(state, [{"id": 1, "version": 0, "updated_at": datetime(2000, 1, 1, tzinfo=UTC)}])
    op.create_table(
        "registry_documents",
        sa.Column("version", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("issued_at", _TS, nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("source_url", sa.String(2000), nullable=True),
        sa.Column("source_etag", sa.String(200), nullable=True),
        sa.Column("stored_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("version", name="pk_registry_documents"),
    )


def downgrade() -> None:
    op.drop_table("registry_documents")
    op.drop_table("registry_state")
    op.drop_index("ix_registry_certificates_authority_id", table_name="registry_certificates")
    op.drop_table("registry_certificates")
    op.drop_table("registry_authorities")
    op.drop_table("registry_parties")
