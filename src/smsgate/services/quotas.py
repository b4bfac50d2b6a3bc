"""Bulk quotas and the minimum interval, moved atomically in the transaction that accepts a
message.

Limits count SMS **parts**, not messages: a 3-part message takes 3 from each window. The
windows are calendar windows in the merchant's time zone (``merchants.timezone``): the day,
the ISO week (Monday to Sunday) and the month that contain "now" there. Each window has a
counter row in ``quota_counters`` keyed ``d:2026-01-31``, ``w:2026-W05``, ``m:2026-01``.

Exact under concurrency: a counter moves by one conditional upsert,

    INSERT INTO quota_counters ... VALUES (:service, :window, :parts)
    ON CONFLICT (service_id, window) DO UPDATE SET count = count + :parts
    WHERE count + :parts <= :limit RETURNING count

which either moves the counter within its limit or returns no row (the limit is reached); it
never reads a count and writes it back. On PostgreSQL a concurrent transaction waits for the
row lock and re-evaluates the condition on the committed row; on SQLite writers are serial
(``BEGIN IMMEDIATE``). A refusal leaves earlier windows moved in the same transaction, so the
caller rolls the transaction (or its savepoint) back, as it does for every refusal.

Every transaction moves rows in the same order (send mark, day, week, month, then the
merchant's balance in the ledger), so two of them can wait on each other but never deadlock.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from smsgate.store.models import QuotaCounter, SendMark

__all__ = [
    "SERVICE_SCOPE",
    "LimitHit",
    "Limits",
    "WindowUsage",
    "claim_send_slot",
    "consume",
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


def _zone(timezone: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        # Provisioning validates the zone; a row edited by hand falls back rather than
        # refusing every message of the merchant.
        return zoneinfo.ZoneInfo("UTC")


def window_keys(now: datetime, timezone: str) -> dict[str, str]:
    """The counter keys of the day, ISO week and month containing ``now`` in ``timezone``."""
    local = now.astimezone(_zone(timezone))
    year, week, _ = local.isocalendar()
    return {
        "day": f"d:{local:%Y-%m-%d}",
        "week": f"w:{year:04d}-W{week:02d}",
        "month": f"m:{local:%Y-%m}",
    }


def _insert(session: AsyncSession) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


async def consume(
    session: AsyncSession,
    *,
    service_id: int,
    parts: int,
    limits: Limits,
    now: datetime,
    timezone: str,
) -> LimitHit | None:
    """Take ``parts`` from every limited window, or say which limit refuses (day first)."""
    if not limits.any:
        return None
    keys = window_keys(now, timezone)
    insert = _insert(session)
    for name, limit, hit in (
        ("day", limits.day, LimitHit.DAY),
        ("week", limits.week, LimitHit.WEEK),
        ("month", limits.month, LimitHit.MONTH),
    ):
        if limit is None:
            continue
        if parts > limit:
            return hit
        statement = insert(QuotaCounter).values(
            service_id=service_id, window=keys[name], count=parts
        )
        moved = await session.execute(
            statement.on_conflict_do_update(
                index_elements=["service_id", "window"],
                set_={"count": QuotaCounter.count + statement.excluded.count},
                where=QuotaCounter.count + statement.excluded.count <= limit,
            ).returning(QuotaCounter.count)
        )
        if moved.scalar_one_or_none() is None:
            return hit
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


async def usage(
    session: AsyncSession, *, service_id: int, limits: Limits, now: datetime, timezone: str
) -> list[WindowUsage]:
    """What the service used in the current windows (for the API and the panel)."""
    keys = window_keys(now, timezone)
    rows = dict(
        (
            await session.execute(
                select(QuotaCounter.window, QuotaCounter.count).where(
                    QuotaCounter.service_id == service_id,
                    QuotaCounter.window.in_(list(keys.values())),
                )
            )
        )
        .tuples()
        .all()
    )
    return [
        WindowUsage(name, key, int(rows.get(key, 0)), getattr(limits, name))
        for name, key in keys.items()
    ]
