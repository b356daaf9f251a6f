"""Retry timing: exponential backoff with full jitter, and a per-peer circuit breaker.

Full jitter (a uniform delay between zero and the exponential cap) spreads the retries of many
rows that failed together, so a peer coming back is not hit by all of them at once. The
circuit breaker bounds the traffic sent to a peer that is down: after N consecutive failures
nothing is tried for a cool-down, then one probe decides whether it closes again.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta


def backoff_delay(
    attempt: int, *, base: float, maximum: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait after the ``attempt``-th failure (1-based): U(0, min(max, base·2^(n-1)))."""
    cap = min(maximum, base * 2 ** max(0, min(attempt - 1, 62)))
    return (rng or random).uniform(0.0, cap)


@dataclass
class _Circuit:
    failures: int = 0
    open_until: datetime | None = None
    probing: bool = False


@dataclass
class CircuitBreaker:
    """Consecutive-failure breaker per peer key; safe to share between delivery threads."""

    threshold: int
    cooldown_seconds: float
    _circuits: dict[str, _Circuit] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def allow(self, peer: str, now: datetime) -> datetime | None:
        """None if a delivery to ``peer`` may go ahead now, else when to try again.

        While the circuit is open nothing passes; once the cool-down is over exactly one probe
        passes (half-open) until its outcome is recorded.
        """
        with self._lock:
            circuit = self._circuits.get(peer)
            if circuit is None or circuit.open_until is None:
                return None
            if now < circuit.open_until:
                return circuit.open_until
            if circuit.probing:
                return now + timedelta(seconds=self.cooldown_seconds)
            circuit.probing = True
            return None

    def open_peers(self, now: datetime) -> set[str]:
        """Peers not worth claiming rows for right now (open and still cooling down)."""
        with self._lock:
            return {
                peer
                for peer, circuit in self._circuits.items()
                if circuit.open_until is not None and (now < circuit.open_until or circuit.probing)
            }

    def record_success(self, peer: str) -> None:
        with self._lock:
            self._circuits.pop(peer, None)

    def record_failure(self, peer: str, now: datetime) -> None:
        with self._lock:
            circuit = self._circuits.setdefault(peer, _Circuit())
            circuit.failures += 1
            if circuit.probing or circuit.failures >= self.threshold:
                circuit.open_until = now + timedelta(seconds=self.cooldown_seconds)
            circuit.probing = False

    def release_probe(self, peer: str) -> None:
        """A probe that ended without an answer about the peer (e.g. a lost lease)."""
        with self._lock:
            circuit = self._circuits.get(peer)
            if circuit is not None:
                circuit.probing = False
