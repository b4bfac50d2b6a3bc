"""Quotas, the minimum interval and the merchant's credit are exact under concurrency: many
parallel HTTP requests against a real uvicorn server on PostgreSQL accept exactly what the
limits allow, no more and no fewer."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from sqlalchemy import func, select
from tests.integration.bulk.bulk_env import MERCHANT_ID, SERVICE_ID, T_START, provision
from tests.live_server import serve

from smsgate.api.app import create_api
from smsgate.app import build_runtime
from smsgate.config import Settings
from smsgate.domain.clock import FakeClock
from smsgate.runtime import Runtime
from smsgate.store.models import LedgerEntry, Merchant, MtMessage, QuotaCounter

pytestmark = pytest.mark.postgres


@pytest.fixture
async def pg_runtime(pg_database_url: str) -> AsyncIterator[Runtime]:
    runtime = build_runtime(Settings(database_url=pg_database_url), clock=FakeClock(T_START))
    yield runtime
    await runtime.engine.dispose()


async def fire(base_url: str | list[str], count: int, **params: Any) -> Counter[str]:
    """``count`` requests at once, each with its own recipient, spread over the gateways;
    the answers counted."""
    urls = [base_url] if isinstance(base_url, str) else base_url
    limits = httpx2.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx2.AsyncClient(limits=limits, timeout=60) as client:

        async def one(index: int) -> str:
            response = await client.get(
                f"{urls[index % len(urls)]}/users/send_bulk.php",
                params={
                    "user_id": MERCHANT_ID,
                    "service_id": SERVICE_ID,
                    "msisdn": f"35988{1000000 + index}",
                    "text": "Your invoice is ready",
                    **params,
                },
            )
            assert response.status_code == 200
            return response.text

        answers = await asyncio.gather(*(one(i) for i in range(count)))
    return Counter(answers)


async def totals(runtime: Runtime) -> tuple[int, int, dict[str, int], int]:
    async with runtime.sessions() as session:
        mts = await session.scalar(select(func.count()).select_from(MtMessage))
        entries = await session.scalar(select(func.count()).select_from(LedgerEntry))
        counters = dict(
            (await session.execute(select(QuotaCounter.window, QuotaCounter.count))).all()
        )
        balance = (await session.get_one(Merchant, MERCHANT_ID)).balance_minor
    return int(mts or 0), int(entries or 0), counters, balance


async def test_100_parallel_requests_against_a_daily_limit_of_10(pg_runtime: Runtime) -> None:
    async with pg_runtime.sessions() as session, session.begin():
        await provision(session, limit_day=10, limit_month=1000, price="0.05")
    async with serve(create_api(pg_runtime)) as url:
        answers = await fire(url, 100)
    assert answers == Counter({"MSG_OK": 10, "LIMIT_DAY": 90})
    mts, entries, counters, balance = await totals(pg_runtime)
    assert (mts, entries, balance) == (10, 10, -50)
    assert counters == {"d:2026-03-10": 10, "m:2026-03": 10}


async def test_two_gateways_share_a_limit_exactly(
    pg_runtime: Runtime, pg_database_url: str
) -> None:
    """Two processes' worth of gateways (each its own engine, pool and batches) on one
    database: the counters are locked across their transactions."""
    async with pg_runtime.sessions() as session, session.begin():
        await provision(session, limit_day=37, price="0.05")
    other = build_runtime(Settings(database_url=pg_database_url), clock=FakeClock(T_START))
    try:
        async with serve(create_api(pg_runtime)) as first, serve(create_api(other)) as second:
            answers = await fire([first, second], 120)
    finally:
        await other.engine.dispose()
    assert answers == Counter({"MSG_OK": 37, "LIMIT_DAY": 83})
    mts, entries, counters, balance = await totals(pg_runtime)
    assert (mts, entries, balance, counters) == (37, 37, -185, {"d:2026-03-10": 37})


async def test_parts_against_a_limit_that_is_not_a_multiple(pg_runtime: Runtime) -> None:
    async with pg_runtime.sessions() as session, session.begin():
        await provision(session, limit_week=25, max_parts=3)
    async with serve(create_api(pg_runtime)) as url:
        answers = await fire(url, 60, text="z" * 400)  # 3 parts each: 8 fit in 25
    assert answers == Counter({"MSG_OK": 8, "LIMIT_WEEK": 52})
    mts, _, counters, _ = await totals(pg_runtime)
    assert (mts, counters) == (8, {"w:2026-W11": 24})


async def test_parallel_requests_against_the_minimum_interval(pg_runtime: Runtime) -> None:
    async with pg_runtime.sessions() as session, session.begin():
        await provision(session, min_interval_seconds=60)
    async with serve(create_api(pg_runtime)) as url:
        answers = await fire(url, 50)
    assert answers == Counter({"MSG_OK": 1, "LIMIT_DELAY": 49})


async def test_parallel_requests_against_the_merchants_credit(pg_runtime: Runtime) -> None:
    async with pg_runtime.sessions() as session, session.begin():
        await provision(session, credit_minor=35, price="0.05")
    async with serve(create_api(pg_runtime)) as url:
        answers = await fire(url, 40)
    assert answers == Counter({"MSG_OK": 7, "SERVICE_DISABLED": 33})
    mts, entries, _, balance = await totals(pg_runtime)
    assert (mts, entries, balance) == (7, 7, -35)
