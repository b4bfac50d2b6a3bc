"""A runtime on the test database with a fake clock, for worker tests."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from smsgate.config import Settings
from smsgate.domain.clock import FakeClock
from smsgate.runtime import Runtime

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def runtime(
    database_url: str,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FakeClock,
) -> Runtime:
    return Runtime(
        settings=Settings(database_url=database_url),
        engine=engine,
        sessions=sessionmaker,
        clock=clock,
    )
