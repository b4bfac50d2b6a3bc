"""A gateway on each database with the bulk service of bulk_env, and an HTTP client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import pytest
from tests.integration.bulk.bulk_env import T_START

from smsgate.api.app import create_api
from smsgate.app import build_runtime
from smsgate.config import Settings
from smsgate.domain.clock import FakeClock
from smsgate.runtime import Runtime


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T_START)


@pytest.fixture
async def runtime(database_url: str, clock: FakeClock) -> AsyncIterator[Runtime]:
    runtime = build_runtime(
        Settings(database_url=database_url, webhook_allow_private=True), clock=clock
    )
    yield runtime
    await runtime.engine.dispose()


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=create_api(runtime), client=("198.51.100.7", 40000))
    async with httpx2.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield client
