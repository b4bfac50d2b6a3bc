"""Uses are counted atomically: concurrent checks over real HTTP, against two uvicorn servers
(two checkers with their own caches, as two gateway processes) on one PostgreSQL database."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import httpx2
import pytest
from sqlalchemy import select
from tests.factories import T0, add_merchant, add_operator, add_service, add_short_number
from tests.integration.access_codes.conftest import code_of, code_settings, send_mo
from tests.live_server import serve

from smsgate.api.app import create_api
from smsgate.app import build_runtime
from smsgate.config import Settings
from smsgate.domain.clock import FakeClock
from smsgate.runtime import Runtime
from smsgate.store.models import AccessCode, CodeCheck

pytestmark = pytest.mark.postgres

CONCURRENT = 20


@pytest.fixture
async def pg_runtime(pg_database_url: str) -> AsyncIterator[Runtime]:
    runtime = build_runtime(Settings(database_url=pg_database_url), clock=FakeClock(T0))
    async with runtime.sessions() as session, session.begin():
        await add_operator(session)
        number = await add_short_number(session)
        await add_merchant(session)
        await add_service(
            session, 102, keyword="ONE", short_numbers=[number], settings=code_settings(uses=1)
        )
        await add_service(
            session, 103, keyword="FIVE", short_numbers=[number], settings=code_settings(uses=5)
        )
        await add_service(
            session,
            104,
            keyword="FIRST",
            short_numbers=[number],
            settings=code_settings(code_kind="period_from_first_use"),
        )
    yield runtime
    await runtime.engine.dispose()


async def fire(urls: list[str], service_id: int, code: str) -> Counter[str]:
    """CONCURRENT checks at once, spread over the servers; the answers counted."""
    limits = httpx2.Limits(max_connections=CONCURRENT, max_keepalive_connections=CONCURRENT)
    clients = [httpx2.AsyncClient(base_url=url, limits=limits, timeout=60) for url in urls]
    start = asyncio.Event()

    async def one(index: int) -> str:
        await start.wait()
        response = await clients[index % len(clients)].get(
            "/users/check_code.php",
            params={"user_id": 1, "service_id": service_id, "code": code},
        )
        assert response.status_code == 200
        return response.text

    try:
        tasks = [asyncio.create_task(one(i)) for i in range(CONCURRENT)]
        await asyncio.sleep(0)
        start.set()
        return Counter(await asyncio.gather(*tasks))
    finally:
        for client in clients:
            await client.aclose()


@pytest.fixture
async def servers(pg_runtime: Runtime) -> AsyncIterator[list[str]]:
    apps = [create_api(pg_runtime), create_api(pg_runtime)]
    try:
        async with serve(apps[0]) as one, serve(apps[1]) as two:
            yield [one, two]
    finally:
        for app in apps:
            checker = getattr(app.state, "code_checker", None)
            if checker is not None:
                await checker.aclose()


async def _code(runtime: Runtime, keyword: str) -> str:
    outcome = await send_mo(runtime, keyword, message_id=f"m-{keyword}")
    return await code_of(runtime, outcome.mo_id)


async def test_a_one_use_code_is_ok_exactly_once(pg_runtime: Runtime, servers: list[str]) -> None:
    code = await _code(pg_runtime, "ONE")
    answers = await fire(servers, 102, code)
    assert answers == Counter({"CODE_OK": 1, "CODE_EXPIRED": CONCURRENT - 1})
    async with pg_runtime.sessions() as session:
        row = await session.scalar(select(AccessCode).where(AccessCode.code == code))
        stored = Counter(
            await session.scalars(select(CodeCheck.answer).where(CodeCheck.service_id == 102))
        )
    assert row is not None and (row.uses_left, row.uses_count, row.status) == (0, 1, "used")
    assert stored == answers


async def test_a_five_use_code_is_ok_exactly_five_times(
    pg_runtime: Runtime, servers: list[str]
) -> None:
    code = await _code(pg_runtime, "FIVE")
    answers = await fire(servers, 103, code)
    assert answers == Counter({"CODE_OK": 5, "CODE_EXPIRED": CONCURRENT - 5})


async def test_concurrent_first_uses_start_one_period(
    pg_runtime: Runtime, servers: list[str]
) -> None:
    code = await _code(pg_runtime, "FIRST")
    answers = await fire(servers, 104, code)
    assert answers == Counter({"CODE_OK": CONCURRENT})
    async with pg_runtime.sessions() as session:
        row = await session.scalar(select(AccessCode).where(AccessCode.code == code))
    assert row is not None and row.uses_count == CONCURRENT
    assert row.first_used_at == T0 and row.valid_until == T0.replace(hour=1)
