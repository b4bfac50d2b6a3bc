"""Temporary bans of addresses that keep failing (seed 000: ``BAN_IP_TEMP``).

An address that collects ``after_failures`` failures within ``window_seconds`` is banned for
``ban_seconds``. The counters live in a ``limits`` storage: in process memory for a single
gateway, in Redis (``SMSGATE_REDIS_URL``) when many gateway processes must share them.

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
import ipaddress
import logging
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from limits.aio.storage import MemoryStorage, RedisStorage, Storage

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


def make_storage(redis_url: str | None, key_prefix: str = "smsgate") -> Storage:
    """Redis when a URL is given (shared by every gateway process), else process memory."""
    if redis_url:
        return RedisStorage(storage_uri(redis_url), key_prefix=key_prefix)
    return MemoryStorage()


class BanList:
    """Failure counters and bans, per ``scope`` (a service) and subject (an address)."""

    def __init__(self, storage: Storage, *, namespace: str = "ban") -> None:
        self.storage = storage
        self.namespace = namespace

    async def is_banned(self, scope: str, address: str, policy: BanPolicy, now: datetime) -> bool:
        if not policy.enabled:
            return False
        slot = _slot_seconds(policy)
        key = self._ban_key(scope, ban_subject(address), math.floor(now.timestamp() / slot))
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

    def _ban_key(self, scope: str, subject: str, slot: int) -> str:
        return f"{self.namespace}:b:{scope}:{subject}:{slot}"

    def _failure_key(self, scope: str, subject: str, bucket: int) -> str:
        return f"{self.namespace}:f:{scope}:{subject}:{bucket}"


def _slot_seconds(policy: BanPolicy) -> int:
    return max(1, math.ceil(policy.ban_seconds / BAN_SLOTS_PER_BAN))
