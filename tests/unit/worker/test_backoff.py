"""Capped exponential backoff with full jitter (domain/backoff.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsgate.domain.backoff import RetryPolicy
from smsgate.worker.webhook_sender import WEBHOOK_RETRY


def test_the_ceiling_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(base_seconds=5, cap_seconds=60)
    assert [policy.ceiling(n) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]
    assert policy.ceiling(10_000) == 60


@given(st.integers(min_value=1, max_value=100_000), st.floats(min_value=0, max_value=1))
def test_a_delay_lies_between_zero_and_the_ceiling(attempt: int, rand: float) -> None:
    policy = RetryPolicy(base_seconds=15, cap_seconds=3 * 3600)
    assert 0 <= policy.delay(attempt, rand) <= policy.ceiling(attempt) <= 3 * 3600


def test_full_jitter_spans_the_whole_range() -> None:
    policy = RetryPolicy(base_seconds=10, cap_seconds=100)
    assert policy.delay(3, 0.0) == 0
    assert policy.delay(3, 0.5) == 20
    assert policy.delay(3, 1.0) == 40


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        RetryPolicy(base_seconds=0, cap_seconds=1)
    with pytest.raises(ValueError):  # noqa: PT011
        RetryPolicy(base_seconds=10, cap_seconds=1)
    with pytest.raises(ValueError):  # noqa: PT011
        RetryPolicy().delay(0, 0.5)
    with pytest.raises(ValueError):  # noqa: PT011
        RetryPolicy().delay(1, 1.5)


def test_the_webhook_schedule_in_the_docs() -> None:
    # docs/webhooks.md: 15 s doubling to a 3 h cap.
    assert [WEBHOOK_RETRY.ceiling(n) for n in range(1, 12)] == [
        15,
        30,
        60,
        120,
        240,
        480,
        960,
        1920,
        3840,
        7680,
        10800,
    ]
