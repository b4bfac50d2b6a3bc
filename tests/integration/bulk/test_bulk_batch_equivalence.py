"""The batch path (services/bulk_decide.py through each of its stores: the SQLAlchemy one of
campaigns, and the raw sqlite3 / asyncpg one of the HTTP endpoints) answers every request
exactly as the one-at-a-time path (services/bulk.accept) does, and leaves the same database:
a seeded random mix of valid and invalid requests over services with limits, intervals,
patterns, opt-outs, idempotency keys and a merchant short of credit."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.conftest import fresh_database_url
from tests.integration.bulk.bulk_env import T_START, add_bulk_service, provision

from smsgate.services.bulk import Accepted, BulkRequest, SendResult, send_one
from smsgate.services.bulk_batch import accept_batch
from smsgate.services.bulk_queue import SessionBatches, batch_store
from smsgate.services.optouts import BY_MERCHANT, add_opt_out
from smsgate.store.db import make_engine, make_sessionmaker
from smsgate.store.models import LedgerEntry, Merchant, MtMessage, QuotaCounter, SendMark

NUMBERS = [f"35988{1000000 + i}" for i in range(5)] + ["0881234567", "12", "4915112345678"]
TEXTS = ["Invoice 7 is due", "Hello", "x" * 200, "Ж" * 80, "Invoice 12345 is due", "", "y" * 400]


async def setup(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session, session.begin():
        await provision(
            session,
            credit_minor=60,
            limit_day=4,
            limit_week=14,
            max_parts=2,
            price="0.03",
        )
        await add_bulk_service(
            session,
            202,
            min_interval_seconds=600,
            patterns=["Invoice {*} is due"],
            price="0",
            max_parts=3,
        )
        await add_bulk_service(
            session, 204, min_interval_seconds=3600, min_interval_scope="recipient", max_parts=3
        )
        await add_bulk_service(session, 203, status="disabled")
        await add_opt_out(session, 201, NUMBERS[3], reason=BY_MERCHANT, now=T_START)


def scenario(seed: int) -> tuple[list[BulkRequest], list[datetime]]:
    rng = random.Random(seed)
    requests: list[BulkRequest] = []
    nows: list[datetime] = []
    at = T_START
    for index in range(160):
        at += timedelta(seconds=rng.choice([0, 0, 1, 5, 30, 120, 3600, 6 * 3600]))
        key = rng.choice([None, None, f"k{rng.randrange(15)}"])
        requests.append(
            BulkRequest(
                service_id=rng.choice([201, 201, 202, 203, 204, 999]),
                user_id=rng.choice([1, 1, 1, 2]),
                msisdn=rng.choice(NUMBERS),
                text=rng.choice(TEXTS),
                idempotency_key=key,
                client_ip="198.51.100.7",
                details={"i": index},
            )
        )
        nows.append(at)
    return requests, nows


def shapes(results: list[SendResult]) -> list[tuple[Any, ...]]:
    """Each answer, with its message named by the first request that got it (ids differ
    where PostgreSQL spent sequence values on rolled-back inserts)."""
    first: dict[int, int] = {}
    out: list[tuple[Any, ...]] = []
    for index, result in enumerate(results):
        if isinstance(result, Accepted):
            origin = first.setdefault(result.mt_id, index)
            out.append(
                ("ok", origin, result.msisdn, result.parts, result.cost_minor, result.duplicate)
            )
        else:
            out.append(("refused", result.reason.value, result.retry_at))
    return out


async def state(sessions: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
    async with sessions() as session:
        return {
            "mts": (
                await session.execute(
                    select(
                        MtMessage.msisdn, MtMessage.parts, MtMessage.cost_minor, MtMessage.text
                    ).order_by(MtMessage.id)
                )
            ).all(),
            # The batch locks a counter by creating it: a row at 0 counts nothing.
            "counters": sorted(
                (
                    await session.execute(
                        select(QuotaCounter.window, QuotaCounter.count).where(
                            QuotaCounter.count > 0
                        )
                    )
                ).all()
            ),
            "marks": sorted(
                (
                    await session.execute(
                        select(SendMark.scope, SendMark.last_at).where(
                            SendMark.last_at > datetime(2000, 1, 1, tzinfo=T_START.tzinfo)
                        )
                    )
                ).all()
            ),
            "balance": (await session.get_one(Merchant, 1)).balance_minor,
            "entries": await session.scalar(select(func.count()).select_from(LedgerEntry)),
        }


@pytest.fixture
def two_databases(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    urls = []
    for name in ("one", "batch"):
        (tmp_path / name).mkdir()
        urls.append(fresh_database_url(backend, request, tmp_path / name))
    return urls


@pytest.mark.parametrize("store", ["session", "raw"])
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_batch_answers_as_one_at_a_time(
    two_databases: list[str], seed: int, store: str
) -> None:
    requests, nows = scenario(seed)
    engines = []
    try:
        engines = [make_engine(url) for url in two_databases]
        one, batch = (make_sessionmaker(engine) for engine in engines)
        await setup(one)
        await setup(batch)

        expected = [await send_one(one, r, now=now) for r, now in zip(requests, nows, strict=True)]
        got: list[SendResult] = []
        raw = batch_store(batch)
        assert not isinstance(raw, SessionBatches)
        rng = random.Random(seed + 100)
        start = 0
        while start < len(requests):
            size = rng.choice([1, 3, 10, 40])
            part, at = requests[start : start + size], nows[start : start + size]
            if store == "session":
                async with batch() as session, session.begin():
                    got += await accept_batch(session, part, at)
            else:
                got += await raw.accept(part, at)
            start += size
        await raw.release()

        assert shapes(got) == shapes(expected)
        assert {s[0] for s in shapes(expected)} == {"ok", "refused"}
        reasons = {s[1] for s in shapes(expected) if s[0] == "refused"}
        assert len(reasons) >= 8, sorted(reasons)
        assert await state(batch) == await state(one)
    finally:
        for engine in engines:
            await engine.dispose()
