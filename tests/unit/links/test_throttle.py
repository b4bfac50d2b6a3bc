import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsgate.domain.throttle import TokenBucket


def test_a_full_bucket_allows_a_burst_then_paces() -> None:
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.1)
    assert bucket.take(0.05) == pytest.approx(0.05)
    assert bucket.take(0.1) == 0.0


def test_the_rate_is_kept_over_a_long_run() -> None:
    bucket = TokenBucket(rate=100, burst=1, now=0.0)
    now, sent = 0.0, 0
    for _ in range(10_000):
        wait = bucket.take(now)
        if wait == 0.0:
            sent += 1
        else:
            now += wait
        if now >= 10.0:
            break
    assert 999 <= sent <= 1001


def test_slow_down_halves_the_rate_once_per_period_then_recovers() -> None:
    bucket = TokenBucket(rate=100, burst=1, now=0.0, recovery_seconds=1.0)
    bucket.slow_down(0.0)
    bucket.slow_down(0.1)  # the same burst of rejections
    assert bucket.current_rate == 50
    bucket.slow_down(1.5)
    assert bucket.current_rate == 25
    bucket.take(2.0)
    assert bucket.current_rate == 25  # only 0.5 s since the last slow-down
    bucket.take(2.6)
    assert bucket.current_rate == pytest.approx(31.25)
    for step in range(3, 20):
        bucket.take(float(step))
    assert bucket.current_rate == 100


def test_the_rate_never_drops_below_the_floor() -> None:
    bucket = TokenBucket(rate=4, burst=1, now=0.0, min_rate=1.0)
    for step in range(10):
        bucket.slow_down(float(step * 2))
    assert bucket.current_rate == 1.0


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate=0, burst=1, now=0.0)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(rate=1, burst=0, now=0.0)


@given(st.lists(st.floats(min_value=0, max_value=0.5), min_size=1, max_size=200))
def test_never_more_than_burst_plus_rate_times_elapsed(steps: list[float]) -> None:
    bucket = TokenBucket(rate=20, burst=5, now=0.0)
    now, taken = 0.0, 0
    for step in steps:
        now += step
        if bucket.take(now) == 0.0:
            taken += 1
    assert taken <= 5 + 20 * now + 1e-6
