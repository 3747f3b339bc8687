"""Exponential backoff with jitter for retried deliveries."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Backoff:
    """``base * factor**(attempt-1)`` capped at ``maximum``, then shortened by up to ``jitter`` of itself.

    Jitter spreads the retries of jobs that failed together (an EasyVista outage) so they do not all
    hit the recovering server at the same instant.
    """

    base: float = 5.0
    factor: float = 2.0
    maximum: float = 900.0
    jitter: float = 0.5
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def __post_init__(self) -> None:
        if self.base <= 0 or self.factor < 1 or self.maximum < self.base or not 0 <= self.jitter <= 1:
            raise ValueError("backoff needs base > 0, factor >= 1, maximum >= base and 0 <= jitter <= 1")

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        exponent = max(attempt - 1, 0)
        raw = self.maximum if exponent > 64 else min(self.maximum, self.base * self.factor**exponent)
        value = raw * (1.0 - self.jitter * self.rng.random())
        if retry_after is not None:
            value = max(value, min(retry_after, self.maximum))
        return value
