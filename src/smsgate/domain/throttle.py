"""The send rate of a link: a token bucket that slows down when the SMSC says "too fast".

``TokenBucket`` holds up to ``burst`` tokens and gains ``rate`` tokens a second; a submit
takes one. When the SMSC answers ESME_RTHROTTLED or ESME_RMSGQFUL (SMPP 3.4 §5.1.3) the link
calls ``slow_down``: the rate halves (down to a floor), and climbs back towards the
configured rate by a quarter every ``recovery_seconds`` without another complaint
(multiplicative decrease, gentle increase, as TCP does with congestion).

Time is a plain float of seconds from a monotonic clock, passed in by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["TokenBucket"]


@dataclass(slots=True)
class TokenBucket:
    rate: float  # the configured tokens per second
    burst: float  # the most tokens held at once
    now: float  # the time the bucket was created
    min_rate: float = 1.0
    recovery_seconds: float = 1.0
    current_rate: float = field(init=False)
    _tokens: float = field(init=False)
    _updated: float = field(init=False)
    _last_slowdown: float = field(init=False)
    _last_recovery: float = field(init=False)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1 or self.min_rate <= 0:
            raise ValueError("need rate > 0, burst >= 1, min_rate > 0")
        self.min_rate = min(self.min_rate, self.rate)
        self.current_rate = self.rate
        self._tokens = self.burst
        self._updated = self.now
        self._last_slowdown = float("-inf")
        self._last_recovery = self.now

    def _refill(self, now: float, *, recover: bool = True) -> None:
        if now <= self._updated:
            return
        if (
            recover
            and self.current_rate < self.rate
            and now - self._last_slowdown >= self.recovery_seconds
            and now - self._last_recovery >= self.recovery_seconds
        ):
            self.current_rate = min(self.rate, self.current_rate * 1.25)
            self._last_recovery = now
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.current_rate)
        self._updated = now

    def take(self, now: float) -> float:
        """Take one token: 0.0 when one was there, else the seconds until one will be (none
        is taken then; call again after waiting)."""
        self._refill(now)
        # The tolerance absorbs float rounding: waiting exactly the returned time must do.
        if self._tokens >= 1.0 - 1e-9:
            self._tokens = max(0.0, self._tokens - 1.0)
            return 0.0
        return (1.0 - self._tokens) / self.current_rate

    def slow_down(self, now: float) -> None:
        """The SMSC pushed back: halve the rate (at most once per recovery period, since one
        burst of rejections is one complaint) and drop the saved-up tokens."""
        self._refill(now, recover=False)
        if now - self._last_slowdown < self.recovery_seconds:
            return
        self.current_rate = max(self.min_rate, self.current_rate / 2.0)
        self._tokens = min(self._tokens, 0.0)
        self._last_slowdown = now
        self._last_recovery = now
