"""Attempts that may be guesses or a flood, counted per source in the database, so that guessing
a password is slow and a stream of made-up credentials cannot make the node write without limit.

Three kinds use it: web logins per (user name, client address) and, with a higher limit, per
client address whatever the name, and refused API keys or session cookies per client address.
Counting logins per pair (not per user name alone) keeps a stranger from locking an officer out
by typing wrong passwords for their name from elsewhere; the price is that guesses spread over
many addresses are slowed only per address (an IPv6 client's /64 counting as one address,
``address_source``). The per-address count bounds how many passwords one address can make
the node check by trying many names (each check is ~50 ms of Argon2).

The counts live in the ``auth_throttle`` table, not in a process's memory: every ``epix serve``
worker process (and a restart) sees the same attempts, so ``--workers 4`` does not give four
times the guesses. A login is counted *before* its password is checked and forgiven when it
succeeds, so guesses sent in parallel cannot all pass the check before the first one fails.
Each row is read and changed under a row lock (PostgreSQL ``FOR UPDATE``; SQLite runs one
writer at a time), so concurrent attempts in several processes are counted exactly.

A row is named by a keyed hash of its source, never the source itself: the user name of a login
is often a password typed into the wrong field, and the table (and every backup of it) kept it
as typed until a later attempt purged it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from epix.auth.models import ThrottleRecord


def address_source(host: str) -> str:
    """The source a client address is counted as: an IPv4 address itself, an IPv6 address by
    its /64. One host is given a whole /64 (SLAAC and privacy addresses, any cloud machine)
    and may send from any address in it, so counted one by one its guesses had no limit."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # not an address (a test client's name, a proxy's label): as it is
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


# What the key naming the rows is derived for (``epix.auth.session_secret.derived_key``).
KEY_PURPOSE = b"epix throttle sources v1"
# Attempts remembered per source at most; the setting is capped to it (``epix.settings``).
MAX_ATTEMPTS = 100


@dataclass(frozen=True, slots=True)
class Refusal:
    """An attempt refused for its source's count: wait ``retry_after`` whole seconds.

    ``first`` is true for the first refusal since the source's last allowed attempt: that one is
    audited, the rest of the stretch is not (one row per stretch, not one per request)."""

    retry_after: int
    first: bool


class Throttle:
    """At most ``max_attempts`` counted attempts per source within ``window_seconds``."""

    def __init__(
        self,
        kind: str,
        max_attempts: int,
        window_seconds: int,
        *,
        key: bytes,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``key`` (``derived_key(settings, KEY_PURPOSE)``) names the rows: the same in every
        process of the node, so that they count together."""
        if not 1 <= max_attempts <= MAX_ATTEMPTS:
            raise ValueError(f"max_attempts must be 1..{MAX_ATTEMPTS}")
        self._kind = kind
        self._hmac_key = key
        self._max = max_attempts
        self._window = window_seconds
        self._clock = clock

    def retry_after(self, session: Session, *source: str) -> int | None:
        """Whole seconds until ``source`` may try again, or None; reads, never writes."""
        row = session.get(ThrottleRecord, self._key(source))
        if row is None:
            return None
        return self._wait(self._recent(row.attempts, self._clock()), self._clock())

    def is_refusing(self, session: Session, *source: str) -> Refusal | None:
        """The refusal ``source``'s next attempt would get inside a stretch already audited, or
        None; reads only, so a flood of refused attempts costs the node no writes."""
        row = session.get(ThrottleRecord, self._key(source))
        if row is None or row.throttled_since is None:
            return None
        wait = self._wait(self._recent(row.attempts, self._clock()), self._clock())
        return Refusal(wait, first=False) if wait is not None else None

    def count(self, session: Session, *source: str) -> Refusal | None:
        """Count an attempt of ``source`` in the caller's transaction, or refuse it uncounted.

        Stale rows of every source are purged on the way, so the table holds only sources
        that tried within the window."""
        now = self._clock()
        key = self._key(source)
        session.execute(delete(ThrottleRecord).where(ThrottleRecord.forget_at <= now))
        insert = (
            postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        )
        session.execute(
            insert(ThrottleRecord)
            .values(key=key, attempts="", forget_at=now + self._window, throttled_since=None)
            .on_conflict_do_nothing(index_elements=["key"])
        )
        row = self._locked_row(session, key)
        assert row is not None  # inserted just above if it was missing
        recent = self._recent(row.attempts, now)
        wait = self._wait(recent, now)
        if wait is not None:
            first = row.throttled_since is None
            if first:
                row.throttled_since = now
            return Refusal(wait, first)
        recent.append(now)
        row.attempts = " ".join(f"{moment:.3f}" for moment in recent)
        row.forget_at = recent[-1] + self._window
        row.throttled_since = None
        return None

    def uncount(self, session: Session, *source: str) -> None:
        """Take back one counted attempt of ``source`` (it succeeded), in the caller's
        transaction; the others stay, unlike ``forgive``."""
        row = self._locked_row(session, self._key(source))
        if row is not None:
            row.attempts = " ".join(row.attempts.split()[:-1])

    def forgive(self, session: Session, *source: str) -> None:
        """Forget ``source``'s attempts (a login succeeded), in the caller's transaction."""
        session.execute(delete(ThrottleRecord).where(ThrottleRecord.key == self._key(source)))

    @staticmethod
    def _locked_row(session: Session, key: str) -> ThrottleRecord | None:
        """The source's row, read afresh under a row lock (PostgreSQL ``FOR UPDATE``)."""
        return session.execute(
            select(ThrottleRecord)
            .where(ThrottleRecord.key == key)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).scalar_one_or_none()

    def _key(self, source: tuple[str, ...]) -> str:
        # User names are matched as stored, but case variants must not multiply the guesses.
        named = "\n".join(part.casefold() for part in source).encode("utf-8")
        return f"{self._kind}\n{hmac.new(self._hmac_key, named, hashlib.sha256).hexdigest()}"

    def _recent(self, attempts: str, now: float) -> list[float]:
        horizon = now - self._window
        return [moment for moment in map(float, attempts.split()) if moment > horizon]

    def _wait(self, recent: list[float], now: float) -> int | None:
        if len(recent) < self._max:
            return None
        return max(1, math.ceil(recent[-self._max] + self._window - now))
