"""When to try a failed job again: capped exponential backoff with full jitter.

Full jitter (a delay drawn uniformly between zero and the exponential ceiling) spreads the
retries of many jobs that failed together, say when a merchant's site was down, so they do not
all come back at the same instant (the "thundering herd").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """Attempt ``n`` (1-based) that failed waits ``uniform(0, min(cap, base * 2**(n-1)))``."""

    base_seconds: float = 5.0
    cap_seconds: float = 3600.0

    def __post_init__(self) -> None:
        if self.base_seconds <= 0 or self.cap_seconds < self.base_seconds:
            raise ValueError("need 0 < base_seconds <= cap_seconds")

    def ceiling(self, attempt: int) -> float:
        """The longest wait after failed attempt ``attempt``."""
        if attempt < 1:
            raise ValueError("attempts count from 1")
        # Past 2**63 the float is meaningless anyway; stop doubling once the cap is reached.
        exponent = min(attempt - 1, 62)
        return min(self.cap_seconds, self.base_seconds * float(2**exponent))

    def delay(self, attempt: int, rand: float) -> float:
        """The wait after failed attempt ``attempt``; ``rand`` is a uniform draw from [0, 1]."""
        if not 0.0 <= rand <= 1.0:
            raise ValueError("rand must be in [0, 1]")
        return self.ceiling(attempt) * rand


# Generic jobs: a few quick retries, then about hourly.
DEFAULT_RETRY = RetryPolicy(base_seconds=5.0, cap_seconds=3600.0)
