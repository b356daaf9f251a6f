"""Failed password logins, counted per user name and client address, so that guessing a
password is slow and cheap to refuse.

Counting per pair (not per user name alone) keeps a stranger from locking an officer out by
typing wrong passwords for their name from elsewhere; the price is that guesses spread over many
addresses are slowed only per address. A throttled attempt is refused before the password is
checked, so it costs no Argon2 work either. The counts live in the process's memory: each
``epix serve`` worker process keeps its own, and a restart forgets them.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

# Pairs remembered at most; the least recently failed are forgotten first, so a flood of
# made-up names or addresses cannot grow the process without bound.
MAX_TRACKED_PAIRS = 10_000


class LoginThrottle:
    """At most ``max_failures`` failed logins per (user name, address) in ``window_seconds``."""

    def __init__(
        self,
        max_failures: int,
        window_seconds: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_pairs: int = MAX_TRACKED_PAIRS,
    ) -> None:
        self._max_failures = max_failures
        self._window = window_seconds
        self._clock = clock
        self._max_pairs = max_pairs
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, username: str, address: str) -> int | None:
        """Whole seconds until this pair may try again, or None when it may try now."""
        key = _key(username, address)
        with self._lock:
            times = self._recent(key)
            if times is None or len(times) < self._max_failures:
                return None
            return max(1, math.ceil(times[0] + self._window - self._clock()))

    def failed(self, username: str, address: str) -> None:
        key = _key(username, address)
        with self._lock:
            times = self._recent(key) or deque(maxlen=self._max_failures)
            times.append(self._clock())
            self._failures[key] = times
            self._failures.move_to_end(key)
            while len(self._failures) > self._max_pairs:
                self._failures.popitem(last=False)

    def succeeded(self, username: str, address: str) -> None:
        with self._lock:
            self._failures.pop(_key(username, address), None)

    def _recent(self, key: tuple[str, str]) -> deque[float] | None:
        """The pair's failures still inside the window (older ones dropped)."""
        times = self._failures.get(key)
        if times is None:
            return None
        horizon = self._clock() - self._window
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times


def _key(username: str, address: str) -> tuple[str, str]:
    # User names are matched as stored, but case variants must not multiply the guesses.
    return (username.casefold(), address)
