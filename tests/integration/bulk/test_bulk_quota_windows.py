"""Quota windows at their boundaries, through send_bulk.php with an injected clock: the day, the
ISO week and the month turn over at midnight in the merchant's time zone, not in UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx2
from tests.integration.bulk.bulk_env import BG_NUMBER, MERCHANT_ID, SERVICE_ID, provision

from smsgate.domain.clock import FakeClock
from smsgate.runtime import Runtime


async def send(client: httpx2.AsyncClient) -> str:
    response = await client.get(
        "/users/send_bulk.php",
        params={
            "user_id": MERCHANT_ID,
            "service_id": SERVICE_ID,
            "msisdn": BG_NUMBER,
            "text": "Reminder",
        },
    )
    return response.text


async def setup(runtime: Runtime, **settings: Any) -> None:
    async with runtime.sessions() as session, session.begin():
        await provision(session, **settings)


async def test_day_turns_over_at_local_midnight(
    runtime: Runtime, client: httpx2.AsyncClient, clock: FakeClock
) -> None:
    await setup(runtime, timezone="Europe/Sofia", limit_day=1)
    # 21:59:59 UTC is 23:59:59 in Sofia (UTC+2 in winter): still Tuesday there.
    clock.set(datetime(2026, 3, 10, 21, 59, 59, tzinfo=UTC))
    assert await send(client) == "MSG_OK"
    assert await send(client) == "LIMIT_DAY"
    clock.set(datetime(2026, 3, 10, 22, 0, 0, tzinfo=UTC))  # 00:00 Wednesday in Sofia
    assert await send(client) == "MSG_OK"
    assert await send(client) == "LIMIT_DAY"


async def test_same_utc_instants_in_utc_zone(
    runtime: Runtime, client: httpx2.AsyncClient, clock: FakeClock
) -> None:
    await setup(runtime, timezone="UTC", limit_day=1)
    clock.set(datetime(2026, 3, 10, 21, 59, 59, tzinfo=UTC))
    assert await send(client) == "MSG_OK"
    clock.set(datetime(2026, 3, 10, 22, 0, 0, tzinfo=UTC))  # still the 10th in UTC
    assert await send(client) == "LIMIT_DAY"
    clock.set(datetime(2026, 3, 10, 23, 59, 59, 999999, tzinfo=UTC))
    assert await send(client) == "LIMIT_DAY"
    clock.set(datetime(2026, 3, 11, 0, 0, 0, tzinfo=UTC))
    assert await send(client) == "MSG_OK"


async def test_iso_week_turns_over_on_monday(
    runtime: Runtime, client: httpx2.AsyncClient, clock: FakeClock
) -> None:
    await setup(runtime, timezone="Europe/Sofia", limit_week=2)
    clock.set(datetime(2026, 3, 9, 0, 0, tzinfo=UTC))  # Monday 02:00 in Sofia
    assert await send(client) == "MSG_OK"
    clock.set(datetime(2026, 3, 15, 21, 59, 59, tzinfo=UTC))  # Sunday 23:59:59 in Sofia
    assert await send(client) == "MSG_OK"
    assert await send(client) == "LIMIT_WEEK"
    clock.set(datetime(2026, 3, 15, 22, 0, 0, tzinfo=UTC))  # Monday 00:00 in Sofia
    assert await send(client) == "MSG_OK"


async def test_month_turns_over_across_a_dst_change(
    runtime: Runtime, client: httpx2.AsyncClient, clock: FakeClock
) -> None:
    # Sofia moves to summer time (UTC+3) on 29 March 2026; April starts at 21:00 UTC.
    await setup(runtime, timezone="Europe/Sofia", limit_month=1)
    clock.set(datetime(2026, 3, 31, 20, 59, 59, tzinfo=UTC))  # 23:59:59 on 31 March
    assert await send(client) == "MSG_OK"
    assert await send(client) == "LIMIT_MONTH"
    clock.set(datetime(2026, 3, 31, 21, 0, 0, tzinfo=UTC))  # 00:00 on 1 April
    assert await send(client) == "MSG_OK"


async def test_week_spanning_new_year_is_one_iso_week(
    runtime: Runtime, client: httpx2.AsyncClient, clock: FakeClock
) -> None:
    # 31 Dec 2026 (Thursday) and 1 Jan 2027 (Friday) are both in ISO week 2026-W53.
    await setup(runtime, timezone="UTC", limit_week=1, limit_month=5)
    clock.set(datetime(2026, 12, 31, 12, 0, tzinfo=UTC))
    assert await send(client) == "MSG_OK"
    clock.set(datetime(2027, 1, 1, 12, 0, tzinfo=UTC))
    assert await send(client) == "LIMIT_WEEK"
    clock.set(datetime(2027, 1, 4, 0, 0, tzinfo=UTC))  # Monday of 2027-W01
    assert await send(client) == "MSG_OK"


async def test_limits_count_parts_not_messages(
    runtime: Runtime, client: httpx2.AsyncClient, clock: FakeClock
) -> None:
    await setup(runtime, limit_day=5, max_parts=3)
    long_text = {"text": "w" * 459}  # 3 parts
    params = {"user_id": MERCHANT_ID, "service_id": SERVICE_ID, "msisdn": BG_NUMBER}
    first = await client.get("/users/send_bulk.php", params={**params, **long_text})
    second = await client.get("/users/send_bulk.php", params={**params, **long_text})
    assert (first.text, second.text) == ("MSG_OK", "LIMIT_DAY")  # 3 + 3 > 5
    assert await send(client) == "MSG_OK"  # 1 part: 4
    assert await send(client) == "MSG_OK"  # 5
    assert await send(client) == "LIMIT_DAY"
