"""People and their API keys. Users are disabled, never deleted: the audit trail names them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from epix.db.base import Base


class User(Base):
    __tablename__ = "auth_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    full_name: Mapped[str | None] = mapped_column(String(200))
    party: Mapped[str] = mapped_column(String(8), index=True)
    authority: Mapped[str] = mapped_column(String(200))
    # Comma-separated ``Role`` values; a handful at most, always read whole.
    roles: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]
    disabled_at: Mapped[datetime | None]
    removed_at: Mapped[datetime | None]
    # Bumped when the password changes or the user is disabled: older web sessions stop working.
    auth_epoch: Mapped[int] = mapped_column(Integer, default=0)


class ApiKey(Base):
    """A system's credential, issued to a named person. Only the SHA-256 of the key is kept."""

    __tablename__ = "auth_api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("auth_users.id"), index=True)
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    label: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class ThrottleRecord(Base):
    """Recent attempts of one kind from one source (``epix.auth.throttle``), in the database so
    that every worker process of a node counts the same attempts and a restart forgets none."""

    __tablename__ = "auth_throttle"

    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    # Unix times of the attempts still inside the window, oldest first, space-separated.
    attempts: Mapped[str] = mapped_column(String(4000))
    # When the newest attempt leaves the window: from then on the row counts nothing (purged).
    forget_at: Mapped[float] = mapped_column(Float, index=True)
    # The first attempt refused in the current stretch of refusals (audited once, not each).
    throttled_since: Mapped[float | None] = mapped_column(Float)
