"""Limits that protect everyone: per-party rate and concurrency limits, and a cap on request bytes
in flight across all parties (docs/security.md).

Pure and synchronous (no I/O): the gateway asks before it does the work, and answers 429 or 503 with
Retry-After when a limit says no. One asyncio process, so no locks are needed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from hub.domain.directory import LimitOverride
from hub.domain.parties import PartyRef

Overrides = Callable[[PartyRef], LimitOverride | None]


def _no_overrides(ref: PartyRef) -> LimitOverride | None:
    return None


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """A token bucket per party: `burst` requests at once, refilled at `rate` per second.

    `take` answers 0.0 when the request may go ahead, else the seconds until a token is there.
    A rate of 0 switches the limit off. Overrides (routing_rules/limits.csv) are read per call, so a
    rules reload takes effect at once.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        overrides: Overrides = _no_overrides,
        clock: Callable[[], float] = time.monotonic,
        max_parties: int = 100_000,
    ) -> None:
        self._rate = rate
        self._burst = burst
        self._overrides = overrides
        self._clock = clock
        self._max = max_parties
        self._buckets: dict[PartyRef, _Bucket] = {}

    def take(self, party: PartyRef) -> float:
        override = self._overrides(party)
        rate = override.rate_per_second if override and override.rate_per_second else self._rate
        burst = override.burst if override and override.burst else self._burst
        if rate <= 0:
            return 0.0
        burst = max(1, burst)
        now = self._clock()
        bucket = self._buckets.get(party)
        if bucket is None:
            if len(self._buckets) >= self._max:
                self._buckets.clear()  # a full bucket for everyone: errs on the side of letting through
            bucket = self._buckets[party] = _Bucket(float(burst), now)
        else:
            bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.at) * rate)
            bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate


class ConcurrencyLimiter:
    """At most `limit` requests of one party in flight (0: no limit)."""

    def __init__(self, limit: int, *, overrides: Overrides = _no_overrides) -> None:
        self._limit = limit
        self._overrides = overrides
        self._in_flight: dict[PartyRef, int] = {}

    def acquire(self, party: PartyRef) -> bool:
        override = self._overrides(party)
        limit = override.max_concurrent if override and override.max_concurrent else self._limit
        count = self._in_flight.get(party, 0)
        if limit > 0 and count >= limit:
            return False
        self._in_flight[party] = count + 1
        return True

    def release(self, party: PartyRef) -> None:
        count = self._in_flight.get(party, 0) - 1
        if count <= 0:
            self._in_flight.pop(party, None)
        else:
            self._in_flight[party] = count

    def in_flight(self, party: PartyRef) -> int:
        return self._in_flight.get(party, 0)


class ByteBudget:
    """The request bytes all requests together may hold at once (0: no cap)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.in_use = 0
        self.peak = 0

    def try_reserve(self, n: int) -> bool:
        if self.cap > 0 and self.in_use + n > self.cap:
            return False
        self.in_use += n
        self.peak = max(self.peak, self.in_use)
        return True

    def release(self, n: int) -> None:
        self.in_use = max(0, self.in_use - n)


def retry_after(seconds: float) -> int:
    """Whole seconds for a Retry-After header: at least 1."""
    return max(1, math.ceil(seconds))
