"""Infrastructure: engine, sessions, unit of work and migrations (SQLite WAL or PostgreSQL)."""

from epix.db.base import Base, utcnow
from epix.db.engine import Database

__all__ = ["Base", "Database", "utcnow"]
