"""Backoff stays within its exponential cap; the circuit breaker opens, probes once, closes."""

from __future__ import annotations

import random
from datetime import timedelta

from epix.db.base import utcnow
from epix.delivery.backoff import CircuitBreaker, backoff_delay


def test_full_jitter_delay_stays_under_the_exponential_cap_and_the_maximum() -> None:
    rng = random.Random(7)
    for attempt in range(1, 40):
        cap = min(30.0, 0.5 * 2 ** (attempt - 1))
        delays = [backoff_delay(attempt, base=0.5, maximum=30.0, rng=rng) for _ in range(50)]
        assert all(0.0 <= delay <= cap for delay in delays)
        assert max(delays) > cap / 2  # jitter spreads over the whole range


def test_breaker_opens_after_consecutive_failures_then_lets_one_probe_through() -> None:
    breaker = CircuitBreaker(threshold=3, cooldown_seconds=10)
    now = utcnow()
    for _ in range(2):
        breaker.record_failure("party:XB", now)
    assert breaker.allow("party:XB", now) is None
    breaker.record_failure("party:XB", now)
    assert breaker.allow("party:XB", now) == now + timedelta(seconds=10)
    assert breaker.open_peers(now) == {"party:XB"}
    assert breaker.allow("party:XC", now) is None

    after = now + timedelta(seconds=11)
    assert breaker.allow("party:XB", after) is None  # the probe
    assert breaker.allow("party:XB", after) is not None  # everyone else waits for it
    breaker.record_failure("party:XB", after)  # probe failed: open again
    assert breaker.allow("party:XB", after + timedelta(seconds=1)) is not None

    later = after + timedelta(seconds=11)
    assert breaker.allow("party:XB", later) is None
    breaker.record_success("party:XB")
    assert breaker.allow("party:XB", later) is None
    assert breaker.open_peers(later) == set()


def test_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker(threshold=2, cooldown_seconds=10)
    now = utcnow()
    breaker.record_failure("p", now)
    breaker.record_success("p")
    breaker.record_failure("p", now)
    assert breaker.allow("p", now) is None
