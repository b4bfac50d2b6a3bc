"""Concurrent debits of one merchant never overdraw, and the cached balance stays the sum.

On PostgreSQL the debits run in truly concurrent transactions (READ COMMITTED): the
conditional UPDATE of the merchant's row is what serialises them. On SQLite, BEGIN
IMMEDIATE serialises whole transactions; the same test must hold there too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from smsgate.store import ledger
from smsgate.store.db import make_engine, make_sessionmaker
from smsgate.store.ledger import InsufficientFunds
from smsgate.store.models import LedgerEntry, Merchant

NOW = datetime(2026, 1, 1, tzinfo=UTC)
Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def pg_engine(pg_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(pg_database_url, pool_size=30, max_overflow=0)
    yield engine
    await engine.dispose()


async def funded_merchant(sessions: Sessions, balance: int) -> None:
    async with sessions() as session, session.begin():
        session.add(
            Merchant(
                id=1,
                login="shop",
                password_hash="x",
                currency="BGN",
                credit_minor=0,
                balance_minor=0,
                created_at=NOW,
                updated_at=NOW,
            )
        )
        await session.flush()
        await ledger.credit_merchant(
            session,
            merchant_id=1,
            amount_minor=balance,
            currency="BGN",
            kind="adjustment",
            ref="seed",
            now=NOW,
        )


async def debit(sessions: Sessions, ref: str, amount: int) -> bool:
    """One debit in its own transaction; True if it went through."""
    async with sessions() as session:
        try:
            async with session.begin():
                await ledger.charge_merchant(
                    session,
                    merchant_id=1,
                    amount_minor=amount,
                    currency="BGN",
                    kind="mt_cost",
                    ref=ref,
                    now=NOW,
                )
        except InsufficientFunds:
            return False
    return True


async def assert_consistent(sessions: Sessions, expected_balance: int, debits: int) -> None:
    async with sessions() as session:
        assert await ledger.cached_balance(session, 1) == expected_balance
        assert await ledger.balance(session, 1) == expected_balance
        assert await ledger.balance_mismatches(session) == []
        count = await session.scalar(
            select(func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == "mt_cost")
        )
        assert count == debits


@pytest.mark.parametrize(("balance", "amount", "tasks"), [(100, 60, 2), (1000, 70, 20)])
async def test_concurrent_debits_never_overdraw_postgres(
    pg_engine: AsyncEngine, balance: int, amount: int, tasks: int
) -> None:
    sessions = make_sessionmaker(pg_engine)
    await funded_merchant(sessions, balance)
    start = asyncio.Event()

    async def racer(i: int) -> bool:
        await start.wait()
        return await debit(sessions, f"mt:{i}", amount)

    runners = [asyncio.create_task(racer(i)) for i in range(tasks)]
    await asyncio.sleep(0)  # let every racer reach the start line
    start.set()
    results = await asyncio.wait_for(asyncio.gather(*runners), timeout=60)

    succeeded = sum(results)
    assert succeeded == balance // amount
    await assert_consistent(sessions, balance - succeeded * amount, succeeded)


async def test_the_second_transaction_waits_then_is_refused_postgres(
    pg_engine: AsyncEngine,
) -> None:
    """T1 debits and holds the row; T2's debit blocks on it; T1 commits; T2 is refused."""
    sessions = make_sessionmaker(pg_engine)
    await funded_merchant(sessions, 100)
    async with sessions() as first:
        await first.begin()
        await ledger.charge_merchant(
            first, merchant_id=1, amount_minor=60, currency="BGN", kind="mt_cost", ref="a", now=NOW
        )
        second = asyncio.create_task(debit(sessions, "b", 60))
        await wait_for_lock_wait(pg_engine)
        assert not second.done()
        await first.commit()
    assert await asyncio.wait_for(second, timeout=30) is False
    await assert_consistent(sessions, 40, 1)


async def test_a_rolled_back_debit_frees_the_money_postgres(pg_engine: AsyncEngine) -> None:
    sessions = make_sessionmaker(pg_engine)
    await funded_merchant(sessions, 100)
    async with sessions() as first:
        await first.begin()
        await ledger.charge_merchant(
            first, merchant_id=1, amount_minor=60, currency="BGN", kind="mt_cost", ref="a", now=NOW
        )
        second = asyncio.create_task(debit(sessions, "b", 60))
        await wait_for_lock_wait(pg_engine)
        await first.rollback()
    assert await asyncio.wait_for(second, timeout=30) is True
    await assert_consistent(sessions, 40, 1)


async def wait_for_lock_wait(engine: AsyncEngine, timeout: float = 10.0) -> None:
    """Poll pg_stat_activity until some other backend waits on a lock (bounded)."""
    deadline = time.monotonic() + timeout
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    async with engine.connect() as connection:
        while time.monotonic() < deadline:
            if (await connection.execute(query)).scalar_one() > 0:
                return
            await connection.rollback()
            await asyncio.sleep(0.02)
    raise AssertionError("the second transaction never waited for the row lock")


async def test_concurrent_debits_never_overdraw(sessionmaker: Sessions) -> None:
    """The same race on the parametrised backend (SQLite serialises whole transactions)."""
    await funded_merchant(sessionmaker, 500)
    results = await asyncio.wait_for(
        asyncio.gather(*(debit(sessionmaker, f"mt:{i}", 70) for i in range(10))), timeout=60
    )
    assert sum(results) == 500 // 70
    await assert_consistent(sessionmaker, 500 - 7 * 70, 7)


async def test_concurrent_repeats_of_one_ref_book_once_postgres(pg_engine: AsyncEngine) -> None:
    sessions = make_sessionmaker(pg_engine)
    await funded_merchant(sessions, 1000)
    results = await asyncio.wait_for(
        asyncio.gather(*(debit(sessions, "mt:same", 100) for _ in range(10))), timeout=60
    )
    assert all(results)
    await assert_consistent(sessions, 900, 1)
