"""Read sessions: on SQLite they read while another connection holds the write lock, and on
both databases they refuse to write; the pooled connection they used writes again afterwards."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from tests.factories import add_merchant

from smsgate.store.db import make_read_sessionmaker, make_sessionmaker
from smsgate.store.models import Merchant


async def add_merchants(engine: AsyncEngine, *merchant_ids: int) -> None:
    async with make_sessionmaker(engine)() as session, session.begin():
        for merchant_id in merchant_ids:
            await add_merchant(session, merchant_id)


async def count_merchants(engine: AsyncEngine) -> int:
    async with make_read_sessionmaker(engine)() as session:
        return int(await session.scalar(select(func.count()).select_from(Merchant)) or 0)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # PostgreSQL readers never wait
async def test_a_read_does_not_wait_for_the_write_lock(engine: AsyncEngine) -> None:
    await add_merchants(engine, 1)
    assert engine.url.database is not None
    holder = sqlite3.connect(engine.url.database, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process's writer, mid-transaction
        # The ordinary session would wait up to busy_timeout (30 s) at BEGIN IMMEDIATE.
        async with asyncio.timeout(2):
            assert await count_merchants(engine) == 1
        holder.execute("ROLLBACK")
    finally:
        holder.close()


async def test_a_read_session_refuses_to_write_and_leaves_the_connection_writable(
    engine: AsyncEngine,
) -> None:
    with pytest.raises(DBAPIError, match=r"(?i)read-?only"):
        async with make_read_sessionmaker(engine)() as session, session.begin():
            await add_merchant(session, 99)
    # The same pooled connections serve writers again, and readers after them.
    for merchant_id in (1, 2, 3):
        await add_merchants(engine, merchant_id)
    assert await count_merchants(engine) == 3
    await add_merchants(engine, 4)
    assert await count_merchants(engine) == 4
