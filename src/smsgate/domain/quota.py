"""Sending quotas (seed 001): calendar windows in the merchant's time zone, and the decision.

Windows are calendar periods of a named IANA time zone: the local day, the ISO week (Monday
to Sunday) and the month. A window runs from the first instant of its first local day to the
first instant of the day after its last, half-open, in UTC. Usually that first instant is local
midnight; where a clock change skips midnight (America/Santiago, Asia/Beirut) it is the instant
the clocks jump, and where a whole day was skipped (Pacific/Apia, 2011-12-30) the window before
it simply ends when the next one begins. Where clocks fall back across midnight and a local
date repeats (America/St_Johns before 2011), the repeated hour belongs to the window that had
already begun, so windows never overlap and never leave a gap.

Window keys are what store/models.QuotaCounter.window holds: ``d:2026-01-31``,
``w:2026-W05``, ``m:2026-01``.

The decision (``decide``) answers in seed 001's words. When several limits are exceeded the
longest-lasting one is reported (LIMIT_MONTH, then LIMIT_WEEK, then LIMIT_DAY, then
LIMIT_DELAY), so a merchant is not told to retry tomorrow when the month is spent. A limit of
``None`` is no limit; a limit of 0 allows nothing. The minimum interval is measured from
whichever last send the caller passes (the service's, or one recipient's).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from smsgate.domain.errors import InvalidQuota

__all__ = [
    "Period",
    "QuotaDecision",
    "QuotaLimits",
    "QuotaOutcome",
    "QuotaUsage",
    "Window",
    "decide",
    "window",
    "window_key",
    "windows",
    "zone",
]

_ONE_DAY: Final = timedelta(days=1)
_TICK: Final = timedelta(microseconds=1)


class Period(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@dataclass(frozen=True, slots=True)
class Window:
    period: Period
    key: str
    start: datetime  # UTC, inclusive
    end: datetime  # UTC, exclusive

    def __contains__(self, instant: datetime) -> bool:
        return self.start <= instant < self.end


def zone(name: str) -> ZoneInfo:
    """The IANA time zone of that name; InvalidQuota when there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidQuota(f"unknown time zone {name!r}") from exc


def _local_date(instant: datetime, tz: tzinfo) -> date:
    return instant.astimezone(tz).date()


def _start_of_day(day: date, tz: tzinfo) -> datetime:
    """The first instant (UTC) whose local date is ``day`` or later."""
    midnight = datetime.combine(day, time())
    # Both readings of local midnight (PEP 495 fold); they differ only around a transition.
    first = midnight.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = midnight.replace(tzinfo=tz, fold=1).astimezone(UTC)
    low, high = min(first, second), max(first, second)
    if _local_date(low, tz) >= day:
        return low  # midnight exists (once, or twice and this is the earlier)
    # Midnight falls in a gap: the day begins at the transition, somewhere in (low, high].
    # Transitions fall on whole seconds; bisecting to the microsecond stays exact anyway.
    while high - low > _TICK:
        middle = low + (high - low) / 2
        if _local_date(middle, tz) >= day:
            high = middle
        else:
            low = middle
    return high


def _day_of(instant: datetime, tz: tzinfo) -> date:
    """The local date whose day window holds ``instant`` (see the module doc for repeats)."""
    day = _local_date(instant, tz)
    for _ in range(4):  # a repeated or skipped date moves it by one step at most
        if instant < _start_of_day(day, tz):
            day -= _ONE_DAY
        elif instant >= _start_of_day(day + _ONE_DAY, tz):
            day += _ONE_DAY
        else:
            break
    return day


def _first_days(period: Period, day: date) -> tuple[date, date]:
    if period is Period.DAY:
        return day, day + _ONE_DAY
    if period is Period.WEEK:
        monday = day - timedelta(days=day.weekday())
        return monday, monday + timedelta(days=7)
    first = day.replace(day=1)
    following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return first, following


def _key(period: Period, first: date) -> str:
    if period is Period.DAY:
        return f"d:{first.isoformat()}"
    if period is Period.WEEK:
        iso = first.isocalendar()
        return f"w:{iso.year:04d}-W{iso.week:02d}"
    return f"m:{first.year:04d}-{first.month:02d}"


def window(period: Period, instant: datetime, tz: tzinfo) -> Window:
    """The calendar window of ``period`` in ``tz`` that holds ``instant`` (an aware datetime)."""
    if instant.tzinfo is None:
        raise ValueError("instant must be timezone-aware")
    first, following = _first_days(period, _day_of(instant, tz))
    return Window(
        period=period,
        key=_key(period, first),
        start=_start_of_day(first, tz),
        end=_start_of_day(following, tz),
    )


def window_key(period: Period, instant: datetime, tz: tzinfo) -> str:
    return window(period, instant, tz).key


def windows(instant: datetime, tz: tzinfo) -> dict[Period, Window]:
    """The day, week and month windows that hold ``instant``."""
    return {period: window(period, instant, tz) for period in Period}


# -- the decision ------------------------------------------------------------------------------


class QuotaOutcome(StrEnum):
    """Values are seed 001's status words (OK is MSG_OK's "go ahead")."""

    OK = "OK"
    LIMIT_DAY = "LIMIT_DAY"
    LIMIT_WEEK = "LIMIT_WEEK"
    LIMIT_MONTH = "LIMIT_MONTH"
    LIMIT_DELAY = "LIMIT_DELAY"


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    day: int | None = None
    week: int | None = None
    month: int | None = None
    min_interval: timedelta | None = None

    def __post_init__(self) -> None:
        for name in ("day", "week", "month"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise InvalidQuota(f"{name} limit must not be negative")
        if self.min_interval is not None and self.min_interval < timedelta(0):
            raise InvalidQuota("minimum interval must not be negative")

    @classmethod
    def from_settings(
        cls,
        *,
        limit_day: int | None = None,
        limit_week: int | None = None,
        limit_month: int | None = None,
        min_interval_seconds: float | None = None,
    ) -> QuotaLimits:
        """From the provisioning file's keys; an interval of 0 means none."""
        return cls(
            day=limit_day,
            week=limit_week,
            month=limit_month,
            min_interval=(
                timedelta(seconds=min_interval_seconds) if min_interval_seconds else None
            ),
        )


@dataclass(frozen=True, slots=True)
class QuotaUsage:
    """What was already sent in the windows that hold ``now``, and when the last send was."""

    day: int = 0
    week: int = 0
    month: int = 0
    last_sent_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class QuotaDecision:
    outcome: QuotaOutcome
    retry_at: datetime | None = None  # earliest instant the same request could pass this check

    @property
    def allowed(self) -> bool:
        return self.outcome is QuotaOutcome.OK


def decide(
    limits: QuotaLimits, usage: QuotaUsage, now: datetime, tz: tzinfo, amount: int = 1
) -> QuotaDecision:
    """May ``amount`` more (messages or parts, as the caller counts) be sent at ``now``?

    The usage counts must be those of the windows that hold ``now`` (``windows(now, tz)``).
    """
    if amount < 0:
        raise ValueError("amount must not be negative")
    checks = (
        (Period.MONTH, limits.month, usage.month, QuotaOutcome.LIMIT_MONTH),
        (Period.WEEK, limits.week, usage.week, QuotaOutcome.LIMIT_WEEK),
        (Period.DAY, limits.day, usage.day, QuotaOutcome.LIMIT_DAY),
    )
    for period, limit, used, outcome in checks:
        if limit is not None and used + amount > limit:
            return QuotaDecision(outcome, retry_at=window(period, now, tz).end)
    if limits.min_interval and usage.last_sent_at is not None:
        ready_at = usage.last_sent_at + limits.min_interval
        if now < ready_at:
            return QuotaDecision(QuotaOutcome.LIMIT_DELAY, retry_at=ready_at)
    return QuotaDecision(QuotaOutcome.OK)
