"""Bulk quotas and the minimum interval, moved atomically in the transaction that accepts a
message.

Limits count SMS **parts**, not messages: a 3-part message takes 3 from each window. The
windows are calendar windows in the merchant's time zone (``merchants.timezone``): the day,
the ISO week (Monday to Sunday) and the month that contain "now" there (domain/quota.py, DST
and skipped days included). Each window has a counter row in ``quota_counters`` keyed
``d:2026-01-31``, ``w:2026-W05``, ``m:2026-01``. When several limits are reached the
longest-lasting is reported: month, week, day, then the minimum interval.

Exact under concurrency: a counter moves by one conditional upsert,

    INSERT INTO quota_counters ... VALUES (:service, :window, :parts)
    ON CONFLICT (service_id, window) DO UPDATE SET count = count + :parts
    WHERE count + :parts <= :limit RETURNING count

which either moves the counter within its limit or returns no row (the limit is reached); it
never reads a count and writes it back. On PostgreSQL a concurrent transaction waits for the
row lock and re-evaluates the condition on the committed row; on SQLite writers are serial
(``BEGIN IMMEDIATE``). A refusal leaves earlier windows moved in the same transaction, so the
caller rolls the transaction (or its savepoint) back, as it does for every refusal.

Every transaction moves rows in the same order (month, week, day, the send mark, then the
merchant's balance in the ledger), so two of them can wait on each other but never deadlock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from smsgate.domain import quota
from smsgate.domain.errors import InvalidQuota
from smsgate.store.models import QuotaCounter, SendMark

__all__ = [
    "SERVICE_SCOPE",
    "LimitHit",
    "LimitRefusal",
    "Limits",
    "WindowUsage",
    "claim_send_slot",
    "consume",
    "merchant_zone",
    "next_send_at",
    "usage",
    "window_keys",
]

# send_marks.scope of the service-wide mark; a per-recipient mark's scope is the msisdn.
SERVICE_SCOPE = ""


class LimitHit(StrEnum):
    """Which limit refused a message; the values are send_bulk.php's status words."""

    DAY = "LIMIT_DAY"
    WEEK = "LIMIT_WEEK"
    MONTH = "LIMIT_MONTH"
    DELAY = "LIMIT_DELAY"


@dataclass(frozen=True, slots=True)
class LimitRefusal:
    hit: LimitHit
    retry_at: datetime | None  # when the same message could pass this limit


@dataclass(frozen=True, slots=True)
class Limits:
    """Parts allowed per calendar window; None: no limit in that window."""

    day: int | None = None
    week: int | None = None
    month: int | None = None

    @property
    def any(self) -> bool:
        return self.day is not None or self.week is not None or self.month is not None


@dataclass(frozen=True, slots=True)
class WindowUsage:
    window: str  # "day" | "week" | "month"
    key: str  # "d:2026-01-31"
    used: int
    limit: int | None
    resets_at: datetime


def merchant_zone(timezone: str) -> tzinfo:
    try:
        return quota.zone(timezone)
    except InvalidQuota:
        # Provisioning validates the zone; a row edited by hand falls back to UTC rather
        # than refusing every message of the merchant.
        return UTC


def window_keys(now: datetime, timezone: str) -> dict[str, str]:
    """The counter keys of the day, ISO week and month containing ``now`` in ``timezone``."""
    found = quota.windows(now, merchant_zone(timezone))
    return {period.value: found[period].key for period in quota.Period}


def _insert(session: AsyncSession) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


# domain/quota.py's precedence: the longest-lasting limit is reported first. The counters are
# also moved in this order by every transaction, which is what keeps them deadlock-free.
_ORDER: Final = (
    (quota.Period.MONTH, LimitHit.MONTH),
    (quota.Period.WEEK, LimitHit.WEEK),
    (quota.Period.DAY, LimitHit.DAY),
)


async def consume(
    session: AsyncSession,
    *,
    service_id: int,
    parts: int,
    limits: Limits,
    now: datetime,
    timezone: str,
) -> LimitRefusal | None:
    """Take ``parts`` from every limited window, or say which limit refuses (month first)."""
    if not limits.any:
        return None
    found = quota.windows(now, merchant_zone(timezone))
    insert = _insert(session)
    for period, hit in _ORDER:
        limit: int | None = getattr(limits, period.value)
        if limit is None:
            continue
        window = found[period]
        if parts > limit:
            return LimitRefusal(hit, None)  # no window will ever take this message
        statement = insert(QuotaCounter).values(
            service_id=service_id, window=window.key, count=parts
        )
        moved = await session.execute(
            statement.on_conflict_do_update(
                index_elements=["service_id", "window"],
                set_={"count": QuotaCounter.count + statement.excluded.count},
                where=QuotaCounter.count + statement.excluded.count <= limit,
            ).returning(QuotaCounter.count)
        )
        if moved.scalar_one_or_none() is None:
            return LimitRefusal(hit, window.end)
    return None


async def claim_send_slot(
    session: AsyncSession,
    *,
    service_id: int,
    scope: str,
    min_interval_seconds: int,
    now: datetime,
) -> bool:
    """Record a send at ``now`` unless the last one (in ``scope``) is under the interval ago.

    One conditional upsert, like the counters: two concurrent sends cannot both pass.
    """
    if min_interval_seconds <= 0:
        return True
    threshold = now - timedelta(seconds=min_interval_seconds)
    statement = _insert(session)(SendMark).values(service_id=service_id, scope=scope, last_at=now)
    moved = await session.execute(
        statement.on_conflict_do_update(
            index_elements=["service_id", "scope"],
            set_={"last_at": statement.excluded.last_at},
            where=SendMark.last_at <= threshold,
        ).returning(SendMark.service_id)
    )
    return moved.scalar_one_or_none() is not None


async def next_send_at(
    session: AsyncSession, *, service_id: int, scope: str, min_interval_seconds: int
) -> datetime | None:
    """When the minimum interval in ``scope`` lets the next message through."""
    last = await session.scalar(
        select(SendMark.last_at).where(SendMark.service_id == service_id, SendMark.scope == scope)
    )
    return last + timedelta(seconds=min_interval_seconds) if last is not None else None


async def usage(
    session: AsyncSession, *, service_id: int, limits: Limits, now: datetime, timezone: str
) -> list[WindowUsage]:
    """What the service used in the current windows (for the API and the panel)."""
    found = quota.windows(now, merchant_zone(timezone))
    keys = [window.key for window in found.values()]
    rows = dict(
        (
            await session.execute(
                select(QuotaCounter.window, QuotaCounter.count).where(
                    QuotaCounter.service_id == service_id, QuotaCounter.window.in_(keys)
                )
            )
        )
        .tuples()
        .all()
    )
    return [
        WindowUsage(
            period.value,
            found[period].key,
            int(rows.get(found[period].key, 0)),
            getattr(limits, period.value),
            found[period].end,
        )
        for period in (quota.Period.DAY, quota.Period.WEEK, quota.Period.MONTH)
    ]
