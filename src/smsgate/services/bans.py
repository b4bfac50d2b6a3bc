"""Temporary bans of addresses that keep failing (seed 000: ``BAN_IP_TEMP``).

An address that collects ``after_failures`` failures within ``window_seconds`` is banned for
``ban_seconds``. The counters live in process memory for a single gateway
(:class:`MemoryCounters`, read without awaiting anything: the check path asks on every
request), or in a ``limits`` Redis storage (``SMSGATE_REDIS_URL``) when many gateway
processes must share them.

Only the storage's atomic ``incr``/``get`` are used, never its own notion of time: every
decision is taken on the gateway's injected clock, so the rules are exact under a fake clock
in tests and identical on every storage. Two encodings make that work without a
compare-and-set:

- Failures are counted in fixed buckets of ``window_seconds`` (key per bucket); the count "in
  the last window" is the current bucket plus the previous one weighted by how much of it
  still lies inside the window (the sliding-window-counter estimate).
- A ban marks every slot of ``slot = max(1, ceil(ban_seconds / 10))`` seconds that it covers;
  an address is banned while the slot of "now" is marked. Concurrent bans only add to the
  same counters, so racing processes cannot corrupt one another, and a ban lasts between
  ``ban_seconds`` and ``ban_seconds + slot``.

Storage keys carry a real-time expiry only so that they are eventually removed; it never
decides a ban. A storage that fails (Redis down) never turns a check into an error: the
failure is logged and the address is treated as not banned (fail open, DESIGN.md §2.1: bad
conditions get a clear answer, never a 500).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from limits.aio.storage import RedisStorage, Storage

log = logging.getLogger(__name__)

BAN_SLOTS_PER_BAN: Final = 10
# IPv6 hosts usually get a whole /64: banning one address of it would ban nothing.
IPV6_BAN_PREFIX: Final = 64


@dataclass(frozen=True, slots=True)
class BanPolicy:
    """When an address is banned. ``after_failures == 0`` never bans."""

    after_failures: int = 10
    window_seconds: int = 600
    ban_seconds: int = 3600

    def __post_init__(self) -> None:
        if self.after_failures < 0 or self.window_seconds < 1 or self.ban_seconds < 1:
            raise ValueError("after_failures >= 0, window_seconds >= 1, ban_seconds >= 1")

    @property
    def enabled(self) -> bool:
        return self.after_failures > 0


@functools.lru_cache(maxsize=4096)  # asked on every check; few addresses ask most of them
def ban_subject(address: str) -> str:
    """The unit a ban applies to: the IPv4 address, or the IPv6 /64 (IPv4-mapped IPv6
    addresses count as their IPv4 address). Anything else is used as given."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return address.strip()[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{ip}/{IPV6_BAN_PREFIX}", strict=False))
    return str(ip)


def storage_uri(redis_url: str) -> str:
    """``redis://…`` as limits' async storage wants it (``async+redis://…``)."""
    if redis_url.startswith("async+"):
        return redis_url
    return f"async+{redis_url}"


def make_storage(redis_url: str | None, key_prefix: str = "smsgate") -> Storage | MemoryCounters:
    """Redis when a URL is given (shared by every gateway process), else process memory."""
    if redis_url:
        return RedisStorage(storage_uri(redis_url), key_prefix=key_prefix)
    return MemoryCounters()


class MemoryCounters:
    """Counters with an expiry, in process memory: the part of a ``limits`` storage that
    :class:`BanList` uses, readable synchronously. Expired keys are dropped when read, and
    all of them at most every ``sweep_seconds`` when counting."""

    def __init__(self, sweep_seconds: float = 60.0) -> None:
        self._counts: dict[str, int] = {}
        self._expiries: dict[str, float] = {}
        self._sweep_seconds = sweep_seconds
        self._next_sweep = time.monotonic() + sweep_seconds

    def value(self, key: str) -> int:
        expiry = self._expiries.get(key)
        if expiry is None:
            return 0
        if expiry <= time.time():
            self._drop(key)
            return 0
        return self._counts[key]

    async def get(self, key: str) -> int:
        return self.value(key)

    async def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        now = time.time()
        if time.monotonic() >= self._next_sweep:
            self._sweep(now)
        count = self.value(key) + amount
        if count == amount:
            self._expiries[key] = now + expiry
        self._counts[key] = count
        return count

    async def clear(self, key: str) -> None:
        self._drop(key)

    async def reset(self) -> None:
        self._counts.clear()
        self._expiries.clear()

    def _drop(self, key: str) -> None:
        self._counts.pop(key, None)
        self._expiries.pop(key, None)

    def _sweep(self, now: float) -> None:
        self._next_sweep = time.monotonic() + self._sweep_seconds
        for key in [key for key, expiry in self._expiries.items() if expiry <= now]:
            self._drop(key)


class BanList:
    """Failure counters and bans, per ``scope`` (a service) and subject (an address)."""

    def __init__(self, storage: Storage | MemoryCounters, *, namespace: str = "ban") -> None:
        self.storage = storage
        self.namespace = namespace

    def is_banned_now(
        self, scope: str, address: str, policy: BanPolicy, now: datetime
    ) -> bool | None:
        """The answer without awaiting anything when the counters are in process memory;
        None when the shared storage must be asked (:meth:`is_banned`)."""
        if not policy.enabled:
            return False
        if not isinstance(self.storage, MemoryCounters):
            return None
        return self.storage.value(self._ban_key_at(scope, address, policy, now)) > 0

    async def is_banned(self, scope: str, address: str, policy: BanPolicy, now: datetime) -> bool:
        if not policy.enabled:
            return False
        key = self._ban_key_at(scope, address, policy, now)
        try:
            return await self.storage.get(key) > 0
        except Exception:
            log.warning("ban storage unavailable; %s treated as not banned", scope, exc_info=True)
            return False

    async def record_failure(
        self, scope: str, address: str, policy: BanPolicy, now: datetime
    ) -> bool:
        """Count one failure; ban the address when it reaches the limit. True if it did."""
        if not policy.enabled:
            return False
        subject = ban_subject(address)
        t = now.timestamp()
        window = policy.window_seconds
        bucket = math.floor(t / window)
        try:
            current = await self.storage.incr(
                self._failure_key(scope, subject, bucket), expiry=2 * window + 1
            )
            count = float(current)
            if current < policy.after_failures:
                previous = await self.storage.get(self._failure_key(scope, subject, bucket - 1))
                count += previous * (1.0 - (t - bucket * window) / window)
            if count < policy.after_failures:
                return False
            await self._ban(scope, subject, policy, t)
        except Exception:
            log.warning("ban storage unavailable; failure of %s not counted", scope, exc_info=True)
            return False
        return True

    async def ban(self, scope: str, address: str, policy: BanPolicy, now: datetime) -> None:
        """Ban at once (an operator's decision, or a test)."""
        await self._ban(scope, ban_subject(address), policy, now.timestamp())

    async def _ban(self, scope: str, subject: str, policy: BanPolicy, t: float) -> None:
        slot = _slot_seconds(policy)
        first = math.floor(t / slot)
        last = math.floor((t + policy.ban_seconds) / slot)
        expiry = policy.ban_seconds + 2 * slot + 1
        # Also clear the failures that led here, so the ban's end starts a fresh count.
        bucket = math.floor(t / policy.window_seconds)
        await asyncio.gather(
            *(
                self.storage.incr(self._ban_key(scope, subject, s), expiry=expiry)
                for s in range(first, last + 1)
            ),
            self.storage.clear(self._failure_key(scope, subject, bucket)),
            self.storage.clear(self._failure_key(scope, subject, bucket - 1)),
        )

    async def aclose(self) -> None:
        """Drop the storage's connections (Redis); memory needs nothing."""
        if isinstance(self.storage, RedisStorage):
            # limits exposes no close(); its coredis bridge keeps the client as ``storage``.
            client = getattr(self.storage.bridge, "storage", None)
            pool = getattr(client, "connection_pool", None)
            if pool is not None:
                pool.disconnect()

    def _ban_key_at(self, scope: str, address: str, policy: BanPolicy, now: datetime) -> str:
        slot = math.floor(now.timestamp() / _slot_seconds(policy))
        return self._ban_key(scope, ban_subject(address), slot)

    def _ban_key(self, scope: str, subject: str, slot: int) -> str:
        return f"{self.namespace}:b:{scope}:{subject}:{slot}"

    def _failure_key(self, scope: str, subject: str, bucket: int) -> str:
        return f"{self.namespace}:f:{scope}:{subject}:{bucket}"


def _slot_seconds(policy: BanPolicy) -> int:
    return max(1, math.ceil(policy.ban_seconds / BAN_SLOTS_PER_BAN))
