"""Helpers for link tests: the built-in simulator over loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from smsgate.config import Settings
from smsgate.links.link import OperatorLink
from smsgate.links.settings import LinkSettings, link_settings
from smsgate.runtime import Runtime
from smsgate.services.mt import queue_mt
from smsgate.simulator import Simulator, SimulatorOptions, config_from_mapping
from smsgate.store.models import MtMessage, MtPart, Operator, ShortNumber

OPERATOR = "sim-test"
SYSTEM_ID = "gw"
PASSWORD = "pw"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
T = TypeVar("T")


def sim_document(**operator: Any) -> dict[str, Any]:
    return {
        "operators": [
            {
                "id": OPERATOR,
                "country": "BG",
                "kind": "smpp",
                "host": "127.0.0.1",
                "port": 1,
                "system_id": SYSTEM_ID,
                "password": PASSWORD,
                **operator,
            }
        ],
        "short_numbers": [
            {"number": "1851", "operator": OPERATOR, "price": "2.40", "currency": "BGN"}
        ],
    }


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    sim = Simulator(config_from_mapping(sim_document(), options=SimulatorOptions()))
    await sim.start("127.0.0.1", 0)
    try:
        yield sim
    finally:
        await sim.stop()


@pytest.fixture
def runtime(
    database_url: str, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> Runtime:
    return Runtime(
        settings=Settings(database_url=database_url), engine=engine, sessions=sessionmaker
    )


async def provision(
    sessions: async_sessionmaker[AsyncSession],
    port: int,
    *,
    operator_id: str = OPERATOR,
    tps: int = 1000,
    window: int = 10,
    **settings: Any,
) -> None:
    async with sessions() as session, session.begin():
        session.add(
            Operator(
                id=operator_id,
                country="BG",
                kind="smpp",
                host="127.0.0.1",
                port=port,
                system_id=SYSTEM_ID,
                password=PASSWORD,
                tps=tps,
                window=window,
                settings=settings,
                created_at=T0,
                updated_at=T0,
            )
        )
        await session.flush()
        session.add(
            ShortNumber(
                number="1851",
                operator_id=operator_id,
                price_minor=240,
                currency="BGN",
                created_at=T0,
                updated_at=T0,
            )
        )


def fast(settings: LinkSettings) -> LinkSettings:
    """Short timers, so that tests of losses and retries finish quickly."""
    return dataclasses.replace(
        settings,
        reconnect_min_seconds=0.05,
        reconnect_max_seconds=0.2,
        response_timeout_seconds=2.0,
        connect_timeout_seconds=2.0,
        retry_min_seconds=0.05,
        retry_max_seconds=0.2,
    )


def settings_for(port: int, **settings: Any) -> LinkSettings:
    return fast(
        link_settings(
            operator_id=OPERATOR,
            host="127.0.0.1",
            port=port,
            system_id=SYSTEM_ID,
            password=PASSWORD,
            tps=settings.pop("tps", 1000),
            window=settings.pop("window", 10),
            settings=settings,
        )
    )


class RunningLink:
    def __init__(self, link: OperatorLink) -> None:
        self.link = link
        self.task = asyncio.create_task(link.run())

    async def bound(self, timeout: float = 5.0) -> None:
        await eventually(lambda: _ready(self.link.state.status == "bound"), timeout)

    async def stop(self) -> None:
        self.link.stop()
        async with asyncio.timeout(15):
            await self.task


async def _ready(value: bool) -> bool:
    return value


async def start_link(runtime: Runtime, settings: LinkSettings) -> RunningLink:
    running = RunningLink(OperatorLink(settings, runtime))
    await running.bound()
    return running


async def eventually(
    check: Callable[[], Awaitable[T]], timeout: float = 5.0, interval: float = 0.02
) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if loop.time() >= deadline:
            raise AssertionError(f"condition not met in {timeout}s (last value {value!r})")
        await asyncio.sleep(interval)


async def send(
    runtime: Runtime, text: str, msisdn: str = "359888123456", sender: str = "1851"
) -> int:
    async with runtime.sessions() as session, session.begin():
        mt = await queue_mt(
            session,
            operator_id=OPERATOR,
            msisdn=msisdn,
            sender=sender,
            text=text,
            now=runtime.clock.now(),
        )
    runtime.wake_links()
    return mt.id


async def mt_row(runtime: Runtime, mt_id: int) -> MtMessage:
    async with runtime.sessions() as session:
        return await session.get_one(MtMessage, mt_id)


async def mt_status(runtime: Runtime, mt_id: int, wanted: str | set[str]) -> MtMessage | None:
    row = await mt_row(runtime, mt_id)
    accepted = {wanted} if isinstance(wanted, str) else wanted
    return row if row.status in accepted else None


async def parts_of(runtime: Runtime, mt_id: int) -> list[MtPart]:
    async with runtime.sessions() as session:
        rows = await session.execute(
            select(MtPart).where(MtPart.mt_id == mt_id).order_by(MtPart.part_no)
        )
        return list(rows.scalars())
