"""Quota windows in local calendars (DST and skipped days included) and the quota decision."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from smsgate.domain.errors import InvalidQuota
from smsgate.domain.quota import (
    Period,
    QuotaLimits,
    QuotaOutcome,
    QuotaUsage,
    decide,
    window,
    window_key,
    windows,
    zone,
)

TICK = timedelta(microseconds=1)
ZONES = [
    "UTC",
    "Europe/Sofia",
    "Europe/Kyiv",
    "Europe/Moscow",
    "America/Santiago",  # spring-forward at midnight: no local 00:00 that day
    "America/Havana",  # likewise
    "Asia/Beirut",  # likewise
    "America/Sao_Paulo",  # used to fall back from 00:00 to 23:00
    "America/St_Johns",  # fell back from 00:01 to 23:01 until 2011: a date repeats
    "Australia/Lord_Howe",  # half-hour DST
    "Pacific/Apia",  # skipped 2011-12-30 entirely
    "Asia/Tehran",
    "Asia/Kolkata",
]

instants = st.datetimes(min_value=datetime(1995, 1, 1), max_value=datetime(2037, 12, 31)).map(
    lambda naive: naive.replace(tzinfo=UTC)
)


def _expected_first_day(period: Period, key: str) -> date:
    if period is Period.DAY:
        return date.fromisoformat(key[2:])
    if period is Period.WEEK:
        year, week = key[2:].split("-W")
        return date.fromisocalendar(int(year), int(week), 1)
    year, month = key[2:].split("-")
    return date(int(year), int(month), 1)


@settings(deadline=None)
@given(st.sampled_from(ZONES), instants, st.sampled_from(list(Period)))
@example("America/Santiago", datetime(2022, 9, 11, 4, 0, tzinfo=UTC), Period.DAY)
@example("Pacific/Apia", datetime(2011, 12, 30, 9, 59, 59, tzinfo=UTC), Period.DAY)
@example("Pacific/Apia", datetime(2011, 12, 30, 10, 0, tzinfo=UTC), Period.WEEK)
@example("America/St_Johns", datetime(2008, 11, 2, 3, 0, tzinfo=UTC), Period.DAY)
@example("Europe/Sofia", datetime(2026, 3, 29, 0, 59, 59, tzinfo=UTC), Period.MONTH)
@example("Europe/Sofia", datetime(2026, 10, 25, 0, 30, tzinfo=UTC), Period.WEEK)
def test_windows_tile_time_without_gaps_or_overlaps(
    zone_name: str, instant: datetime, period: Period
) -> None:
    tz = zone(zone_name)
    current = window(period, instant, tz)
    assert current.start <= instant < current.end
    assert instant in current
    # Its own edges map back to it; its neighbours touch it exactly.
    assert window(period, current.start, tz) == current
    assert window(period, current.end - TICK, tz) == current
    following = window(period, current.end, tz)
    assert following.start == current.end
    assert following.key > current.key
    previous = window(period, current.start - TICK, tz)
    assert previous.end == current.start
    assert previous.key < current.key


@settings(deadline=None)
@given(st.sampled_from(ZONES), instants, st.sampled_from(list(Period)))
def test_windows_begin_at_the_first_instant_of_their_local_day(
    zone_name: str, instant: datetime, period: Period
) -> None:
    tz = zone(zone_name)
    current = window(period, instant, tz)
    first_day = _expected_first_day(period, current.key)
    local_start = current.start.astimezone(tz)
    assert local_start.date() == first_day
    # Local midnight, or the moment the clocks jumped past it.
    assert (current.start - TICK).astimezone(tz).date() < first_day
    if period is Period.WEEK:
        assert first_day.weekday() == 0
    if period is Period.MONTH:
        assert first_day.day == 1


@pytest.mark.parametrize(
    ("zone_name", "day", "hours"),
    [
        ("Europe/Sofia", date(2026, 3, 29), 23),  # EET -> EEST
        ("Europe/Sofia", date(2026, 10, 25), 25),
        ("Europe/Kyiv", date(2026, 3, 29), 23),
        ("Europe/Moscow", date(2026, 3, 29), 24),  # no DST since 2014
        ("Australia/Lord_Howe", date(2026, 4, 5), 24.5),
    ],
)
def test_day_lengths_across_clock_changes(zone_name: str, day: date, hours: float) -> None:
    tz = zone(zone_name)
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=tz)
    current = window(Period.DAY, noon, tz)
    assert current.key == f"d:{day.isoformat()}"
    assert current.end - current.start == timedelta(hours=hours)


def test_day_without_midnight_starts_when_clocks_jump() -> None:
    tz = zone("America/Santiago")
    current = window(Period.DAY, datetime(2022, 9, 11, 12, tzinfo=UTC), tz)
    assert current.start == datetime(2022, 9, 11, 4, tzinfo=UTC)
    assert current.start.astimezone(tz).hour == 1


def test_skipped_day_is_absorbed() -> None:
    tz = zone("Pacific/Apia")
    before = window(Period.DAY, datetime(2011, 12, 30, 9, tzinfo=UTC), tz)
    after = window(Period.DAY, datetime(2011, 12, 30, 10, tzinfo=UTC), tz)
    assert (before.key, after.key) == ("d:2011-12-29", "d:2011-12-31")
    assert before.end == after.start


def test_keys_match_the_counter_table_format() -> None:
    tz = zone("Europe/Sofia")
    keys = {p: w.key for p, w in windows(datetime(2026, 1, 31, 12, tzinfo=UTC), tz).items()}
    assert keys == {
        Period.DAY: "d:2026-01-31",
        Period.WEEK: "w:2026-W05",
        Period.MONTH: "m:2026-01",
    }


def test_iso_week_of_new_year() -> None:
    tz = zone("UTC")
    # 2027-01-01 is a Friday: ISO week 53 of 2026, which began on Monday 2026-12-28.
    current = window(Period.WEEK, datetime(2027, 1, 1, tzinfo=UTC), tz)
    assert current.key == "w:2026-W53"
    assert current.start == datetime(2026, 12, 28, tzinfo=UTC)


def test_local_midnight_decides_the_day_not_utc() -> None:
    tz = zone("Europe/Sofia")
    assert window_key(Period.DAY, datetime(2026, 1, 31, 21, 59, tzinfo=UTC), tz) == "d:2026-01-31"
    assert window_key(Period.DAY, datetime(2026, 1, 31, 22, 0, tzinfo=UTC), tz) == "d:2026-02-01"
    assert window_key(Period.MONTH, datetime(2026, 1, 31, 22, 0, tzinfo=UTC), tz) == "m:2026-02"


def test_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        window(Period.DAY, datetime(2026, 1, 1), zone("UTC"))


@pytest.mark.parametrize("name", ["Mars/Olympus", "../etc/passwd", ""])
def test_unknown_zone(name: str) -> None:
    with pytest.raises(InvalidQuota):
        zone(name)


# -- the decision ------------------------------------------------------------------------------

NOW = datetime(2026, 5, 13, 9, 0, tzinfo=UTC)  # a Wednesday
SOFIA = zone("Europe/Sofia")
LIMITS = QuotaLimits(day=10, week=50, month=100, min_interval=timedelta(seconds=30))


@pytest.mark.parametrize(
    ("usage", "outcome"),
    [
        (QuotaUsage(day=9, week=49, month=99), QuotaOutcome.OK),
        (QuotaUsage(day=10, week=10, month=10), QuotaOutcome.LIMIT_DAY),
        (QuotaUsage(day=0, week=50, month=50), QuotaOutcome.LIMIT_WEEK),
        (QuotaUsage(day=0, week=0, month=100), QuotaOutcome.LIMIT_MONTH),
        (QuotaUsage(day=10, week=50, month=100), QuotaOutcome.LIMIT_MONTH),  # longest first
        (QuotaUsage(day=10, week=50, month=0), QuotaOutcome.LIMIT_WEEK),
        (QuotaUsage(last_sent_at=NOW - timedelta(seconds=29)), QuotaOutcome.LIMIT_DELAY),
        (QuotaUsage(last_sent_at=NOW - timedelta(seconds=30)), QuotaOutcome.OK),
        (
            QuotaUsage(day=10, last_sent_at=NOW - timedelta(seconds=1)),
            QuotaOutcome.LIMIT_DAY,
        ),
    ],
)
def test_decide(usage: QuotaUsage, outcome: QuotaOutcome) -> None:
    decision = decide(LIMITS, usage, NOW, SOFIA)
    assert decision.outcome is outcome
    assert decision.allowed is (outcome is QuotaOutcome.OK)


def test_retry_at_is_the_end_of_the_blocking_window_or_the_delay() -> None:
    day = decide(LIMITS, QuotaUsage(day=10), NOW, SOFIA)
    assert day.retry_at == datetime(2026, 5, 13, 21, 0, tzinfo=UTC)  # Sofia midnight, EEST
    week = decide(LIMITS, QuotaUsage(week=50), NOW, SOFIA)
    assert week.retry_at == datetime(2026, 5, 17, 21, 0, tzinfo=UTC)  # Monday 00:00 local
    delay = decide(LIMITS, QuotaUsage(last_sent_at=NOW - timedelta(seconds=10)), NOW, SOFIA)
    assert delay.retry_at == NOW + timedelta(seconds=20)
    assert decide(LIMITS, QuotaUsage(), NOW, SOFIA).retry_at is None


def test_amount_counts_against_the_remainder() -> None:
    assert decide(LIMITS, QuotaUsage(day=8), NOW, SOFIA, amount=2).allowed
    assert not decide(LIMITS, QuotaUsage(day=8), NOW, SOFIA, amount=3).allowed


def test_no_limits_and_zero_limits() -> None:
    assert decide(QuotaLimits(), QuotaUsage(day=10**9), NOW, SOFIA).allowed
    nothing = QuotaLimits(day=0)
    assert decide(nothing, QuotaUsage(), NOW, SOFIA).outcome is QuotaOutcome.LIMIT_DAY


def test_from_settings() -> None:
    limits = QuotaLimits.from_settings(
        limit_day=1000, limit_week=5000, limit_month=20000, min_interval_seconds=0
    )
    assert limits == QuotaLimits(day=1000, week=5000, month=20000, min_interval=None)
    assert QuotaLimits.from_settings(min_interval_seconds=5).min_interval == timedelta(seconds=5)


@pytest.mark.parametrize(
    "kwargs", [{"day": -1}, {"week": -1}, {"month": -5}, {"min_interval": timedelta(seconds=-1)}]
)
def test_negative_limits_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidQuota):
        QuotaLimits(**kwargs)  # type: ignore[arg-type]


limit_values = st.none() | st.integers(0, 20)


@settings(deadline=None)
@given(
    limit_values,
    limit_values,
    limit_values,
    st.integers(0, 25),
    st.integers(0, 25),
    st.integers(0, 25),
    st.integers(0, 5),
)
def test_allowed_exactly_when_every_limit_has_room(
    day: int | None,
    week: int | None,
    month: int | None,
    used_day: int,
    used_week: int,
    used_month: int,
    amount: int,
) -> None:
    limits = QuotaLimits(day=day, week=week, month=month)
    usage = QuotaUsage(day=used_day, week=used_week, month=used_month)
    room = all(
        limit is None or used + amount <= limit
        for limit, used in ((day, used_day), (week, used_week), (month, used_month))
    )
    decision = decide(limits, usage, NOW, SOFIA, amount)
    assert decision.allowed is room
    if not room:
        assert decision.retry_at is not None
        assert decision.retry_at > NOW
