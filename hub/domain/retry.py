"""When to try a delivery again, and when to give up.

Exponential backoff with jitter, bounded by a number of attempts and by the age of the first
attempt. The defaults follow the spirit of Digikoppeling's reliable messaging: keep trying for five
days, so a partner that is offline over a long weekend still gets everything.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from enum import StrEnum


class Classification(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"  # 408, 429, 5xx, connection errors and timeouts
    PERMANENT = "permanent"  # any other answer: retrying will not help


def classify(status: int | None) -> Classification:
    """An HTTP status (None: no answer at all) as a delivery outcome."""
    if status is None or status in (408, 429) or 500 <= status <= 599:
        return Classification.RETRY
    if 200 <= status <= 299:
        return Classification.DELIVERED
    return Classification.PERMANENT


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_seconds: float = 5.0
    factor: float = 2.0
    cap_seconds: float = 3600.0
    jitter: float = 0.25  # the delay is drawn from [d*(1-jitter), d*(1+jitter)]
    max_attempts: int = 150
    max_age_seconds: float = 5 * 24 * 3600.0

    def delay(self, attempts: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after the `attempts`-th failed attempt (1 for the first failure)."""
        nominal = min(self.cap_seconds, self.base_seconds * self.factor ** max(0, attempts - 1))
        draw = (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        return nominal * draw

    def give_up(self, attempts: int, age_seconds: float) -> str | None:
        """Why to stop after `attempts` failures, `age_seconds` after the first; None to go on."""
        if attempts >= self.max_attempts:
            return f"gave up after {attempts} attempts"
        if age_seconds >= self.max_age_seconds:
            return f"gave up after {age_seconds / 3600:.1f} hours"
        return None

    def with_override(self, max_attempts: int | None, max_age_hours: float | None) -> RetryPolicy:
        """This policy with a receiver's own bounds where it set them."""
        return replace(
            self,
            max_attempts=max_attempts if max_attempts is not None else self.max_attempts,
            max_age_seconds=max_age_hours * 3600 if max_age_hours is not None else self.max_age_seconds,
        )
