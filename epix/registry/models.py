"""Registry tables: Parties, their authorities, authority certificates and the version counter.

Certificates are never deleted: a revocation is recorded on the row, so the registry can still
answer "who could sign for Party P, role R, at time T" for archived documents.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from epix.db.base import Base

# The longest source ETag kept for the next conditional fetch (a longer one is not kept).
ETAG_LENGTH = 200


class RegistryParty(Base):
    """A Party (ISO 3166 alpha-2) and the endpoint of its node, if it runs one."""

    __tablename__ = "registry_parties"

    code: Mapped[str] = mapped_column(String(8), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    endpoint_url: Mapped[str | None] = mapped_column(String(2000))
    added_at: Mapped[datetime]

    authorities: Mapped[list[RegistryAuthority]] = relationship(
        back_populates="party", order_by="RegistryAuthority.id"
    )


class RegistryAuthority(Base):
    """A management authority, customs, scientific authority or node of one Party."""

    __tablename__ = "registry_authorities"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    party_code: Mapped[str] = mapped_column(ForeignKey("registry_parties.code"))
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    contact: Mapped[str | None] = mapped_column(String(500))
    added_at: Mapped[datetime]

    party: Mapped[RegistryParty] = relationship(back_populates="authorities")
    certificates: Mapped[list[RegistryCertificate]] = relationship(
        back_populates="authority", order_by="RegistryCertificate.id"
    )

    __table_args__ = (
        UniqueConstraint(
            "party_code", "kind", "name", name="uq_registry_authorities_party_kind_name"
        ),
    )


class RegistryCertificate(Base):
    """One signing certificate of an authority; several may be valid at once (rollover)."""

    __tablename__ = "registry_certificates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    authority_id: Mapped[int] = mapped_column(ForeignKey("registry_authorities.id"))
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    pem: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(String(500))
    not_before: Mapped[datetime]
    not_after: Mapped[datetime]
    # Space-separated signing roles, e.g. "management_authority".
    roles: Mapped[str] = mapped_column(String(200))
    added_by: Mapped[str] = mapped_column(String(150))
    added_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revocation_reason: Mapped[str | None] = mapped_column(String(500))
    revoked_by: Mapped[str | None] = mapped_column(String(150))

    authority: Mapped[RegistryAuthority] = relationship(back_populates="certificates")

    __table_args__ = (
        Index("ix_registry_certificates_authority_id", "authority_id"),
        # Certificates ending soon, counted at every /metrics scrape, are one range.
        Index("ix_registry_certificates_not_after", "not_after"),
    )


class RegistryState(Base):
    """The single row holding the registry version; every change increments it."""

    __tablename__ = "registry_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime]


class RegistrySourceCheck(Base):
    """A follower's last look at its registry source (one row): when, how it ended, and when
    the source last confirmed the copy held is current. Written by the follower's process,
    read by every web process for /metrics."""

    __tablename__ = "registry_source_checks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    source_url: Mapped[str] = mapped_column(String(2000))
    checked_at: Mapped[datetime]
    failure_code: Mapped[str | None] = mapped_column(String(32))
    confirmed_at: Mapped[datetime | None]


class RegistryDocument(Base):
    """A Secretariat-signed registry document this node published or imported (last good copy).

    The exact signed bytes are kept: a follower serves them unchanged, and they are evidence of
    what the registry said at each version.
    """

    __tablename__ = "registry_documents"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    issued_at: Mapped[datetime]
    # The signed expiry (None for documents issued before expiry existed: they never expire).
    expires_at: Mapped[datetime | None]
    content: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    source_url: Mapped[str | None] = mapped_column(String(2000))
    source_etag: Mapped[str | None] = mapped_column(String(ETAG_LENGTH))
    stored_at: Mapped[datetime]
    # SHA-256 of the Secretariat certificate that signed it (None: stored before rotation).
    signer_fingerprint: Mapped[str | None] = mapped_column(String(64))


class RegistryAnchorLink(Base):
    """Secretariat node: one announcement of its next signing certificate, signed by the
    current one (an ``AnchorAnnouncement``). Every published document carries all of them, in
    order, so a follower can walk from whatever anchor it trusts to the one now signing."""

    __tablename__ = "registry_anchor_links"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    signer_fingerprint: Mapped[str] = mapped_column(String(64))
    next_fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    announced_at: Mapped[datetime]
    announced_by: Mapped[str] = mapped_column(String(150))


class RegistryAnchor(Base):
    """Follower node: a Secretariat certificate it learnt from verified documents: the one it
    trusts now (``trusted``), the successor announced to it (``next``), or one it moved away
    from (``retired``, never accepted again: a stolen old key cannot roll it back)."""

    __tablename__ = "registry_anchors"

    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    pem: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    registry_version: Mapped[int] = mapped_column(Integer)
    changed_at: Mapped[datetime]


class RegistryFollowerFetch(Base):
    """Secretariat node: the last time each Party's follower fetched the registry document
    identifying itself (a ``peer_node`` API key on ``GET /v1/registry``), one row per Party, so
    the Secretariat sees who has picked up an announced successor before switching to it."""

    __tablename__ = "registry_follower_fetches"

    party: Mapped[str] = mapped_column(String(8), primary_key=True)
    fetched_at: Mapped[datetime]
    # 200 (the document was sent) or 304 (the follower's copy was still the newest).
    status: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    # The successor named by the newest anchor announcement the document carried, if any.
    anchor_fingerprint: Mapped[str | None] = mapped_column(String(64))
