"""The pure parts of bans: what a ban applies to, and the policy's bounds."""

from __future__ import annotations

import pytest

from smsgate.services.bans import BanPolicy, ban_subject, storage_uri


@pytest.mark.parametrize(
    ("address", "subject"),
    [
        ("10.0.0.1", "10.0.0.1"),
        (" 10.0.0.1 ", "10.0.0.1"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("2001:db8::1", "2001:db8::/64"),
        ("2001:DB8:0:0:1::1", "2001:db8::/64"),
        ("not-an-address", "not-an-address"),
        ("", ""),
    ],
)
def test_ban_subject(address: str, subject: str) -> None:
    assert ban_subject(address) == subject


def test_policy_bounds() -> None:
    assert not BanPolicy(after_failures=0).enabled
    with pytest.raises(ValueError, match="window_seconds"):
        BanPolicy(window_seconds=0)
    with pytest.raises(ValueError, match="after_failures"):
        BanPolicy(after_failures=-1)


def test_storage_uri() -> None:
    assert storage_uri("redis://127.0.0.1:6379/0") == "async+redis://127.0.0.1:6379/0"
    assert storage_uri("rediss://h:1") == "async+rediss://h:1"
    assert storage_uri("async+redis://h:1") == "async+redis://h:1"
