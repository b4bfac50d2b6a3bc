"""Bans on both storages (memory, real Redis), decided on an injected clock."""

from __future__ import annotations

from smsgate.domain.clock import FakeClock
from smsgate.services.bans import BanList, BanPolicy

POLICY = BanPolicy(after_failures=3, window_seconds=60, ban_seconds=600)


async def test_the_nth_failure_within_the_window_bans(ban_list: BanList) -> None:
    clock = FakeClock()
    for _ in range(POLICY.after_failures - 1):
        assert not await ban_list.record_failure("102", "10.0.0.1", POLICY, clock.now())
        clock.advance(5)
    assert not await ban_list.is_banned("102", "10.0.0.1", POLICY, clock.now())
    assert await ban_list.record_failure("102", "10.0.0.1", POLICY, clock.now())
    assert await ban_list.is_banned("102", "10.0.0.1", POLICY, clock.now())
    # Other addresses and other services are not affected.
    assert not await ban_list.is_banned("102", "10.0.0.2", POLICY, clock.now())
    assert not await ban_list.is_banned("103", "10.0.0.1", POLICY, clock.now())


async def test_a_ban_lasts_ban_seconds_and_at_most_one_slot_more(ban_list: BanList) -> None:
    clock = FakeClock()
    for _ in range(POLICY.after_failures):
        await ban_list.record_failure("102", "10.0.0.1", POLICY, clock.now())
    clock.advance(POLICY.ban_seconds - 1)
    assert await ban_list.is_banned("102", "10.0.0.1", POLICY, clock.now())
    clock.advance(POLICY.ban_seconds // 10 + 1)
    assert not await ban_list.is_banned("102", "10.0.0.1", POLICY, clock.now())


async def test_failures_spread_wider_than_the_window_do_not_ban(ban_list: BanList) -> None:
    clock = FakeClock()
    for _ in range(10):
        assert not await ban_list.record_failure("102", "10.0.0.1", POLICY, clock.now())
        clock.advance(POLICY.window_seconds)
    assert not await ban_list.is_banned("102", "10.0.0.1", POLICY, clock.now())


async def test_a_window_straddling_two_buckets_still_counts(ban_list: BanList) -> None:
    clock = FakeClock()
    clock.advance(POLICY.window_seconds - 1)  # the last second of a bucket
    await ban_list.record_failure("102", "10.0.0.1", POLICY, clock.now())
    await ban_list.record_failure("102", "10.0.0.1", POLICY, clock.now())
    clock.advance(1)  # the next bucket starts: the previous one still counts in full
    assert await ban_list.record_failure("102", "10.0.0.1", POLICY, clock.now())


async def test_ipv6_addresses_of_one_slash_64_share_a_ban(ban_list: BanList) -> None:
    clock = FakeClock()
    for host in ("2001:db8::1", "2001:db8::2", "2001:db8::3"):
        await ban_list.record_failure("102", host, POLICY, clock.now())
    assert await ban_list.is_banned("102", "2001:db8::ffff", POLICY, clock.now())
    assert not await ban_list.is_banned("102", "2001:db8:0:1::1", POLICY, clock.now())


async def test_a_disabled_policy_never_bans(ban_list: BanList) -> None:
    clock = FakeClock()
    off = BanPolicy(after_failures=0)
    for _ in range(50):
        assert not await ban_list.record_failure("102", "10.0.0.1", off, clock.now())
    assert not await ban_list.is_banned("102", "10.0.0.1", off, clock.now())
