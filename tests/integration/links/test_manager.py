"""The link manager: links started from the operators table, stopped and restarted on change,
one owner per bind, and the state reported to the panel and to /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx2
import pytest
from pydantic import SecretStr
from sqlalchemy import update
from tests.integration.links.link_env import (
    OPERATOR,
    eventually,
    fast,
    mt_status,
    provision,
    send,
)

from smsgate.api.app import create_api
from smsgate.config import Settings
from smsgate.links.manager import LinkManager
from smsgate.links.ownership import FileOwnership, PostgresOwnership
from smsgate.metrics import REGISTRY
from smsgate.runtime import Runtime
from smsgate.simulator import Simulator
from smsgate.store.db import make_engine, make_sessionmaker
from smsgate.store.models import Operator


class Managed:
    def __init__(self, manager: LinkManager) -> None:
        self.manager = manager
        self.task = asyncio.create_task(manager.run())

    async def status(self, wanted: str) -> bool:
        return any(
            link["operator"] == OPERATOR and link["status"] == wanted
            for link in self.manager.board.snapshot()
        )

    async def stop(self) -> None:
        self.manager.stop()
        async with asyncio.timeout(20):
            await self.task


@pytest.fixture
async def managed(runtime: Runtime) -> AsyncIterator[Managed]:
    running = Managed(LinkManager(runtime, refresh_seconds=0.1, tune=fast))
    try:
        yield running
    finally:
        await running.stop()


async def test_links_follow_the_operators_table(
    runtime: Runtime, simulator: Simulator, managed: Managed
) -> None:
    await provision(runtime.sessions, simulator.smpp_port)
    await eventually(lambda: managed.status("bound"))
    mt_id = await send(runtime, "managed")
    await eventually(lambda: mt_status(runtime, mt_id, "delivered"))

    old = managed.manager.links()[OPERATOR]
    async with runtime.sessions() as session, session.begin():
        await session.execute(update(Operator).values(window=5))
    await eventually(lambda: _replaced(managed.manager, old))
    assert managed.manager.links()[OPERATOR].settings.window == 5

    async with runtime.sessions() as session, session.begin():
        await session.execute(update(Operator).values(enabled=False))
    await eventually(lambda: _gone(managed.manager))
    assert managed.manager.board.snapshot() == []


async def _replaced(manager: LinkManager, old: object) -> bool:
    link = manager.links().get(OPERATOR)
    return link is not None and link is not old and link.state.status == "bound"


async def _gone(manager: LinkManager) -> bool:
    return OPERATOR not in manager.links() and manager.board.snapshot() == []


async def test_the_panel_endpoint_and_metrics_show_the_link(
    runtime: Runtime, simulator: Simulator, managed: Managed
) -> None:
    await provision(runtime.sessions, simulator.smpp_port)
    await eventually(lambda: managed.status("bound"))
    mt_id = await send(runtime, "counted")
    await eventually(lambda: mt_status(runtime, mt_id, "delivered"))
    runtime.settings.admin_token = SecretStr("admin-secret")
    transport = httpx2.ASGITransport(app=create_api(runtime))
    async with httpx2.AsyncClient(transport=transport, base_url="http://gateway") as http:
        assert (await http.get("/api/v1/links")).status_code == 401
        response = await http.get("/api/v1/links", headers={"Authorization": "Bearer admin-secret"})
        assert response.status_code == 200
        (link,) = response.json()["links"]
        assert link["operator"] == OPERATOR
        assert link["bound"] is True
        assert link["submitted"] == 1
        assert link["window"] == 10
        metrics = (await http.get("/metrics")).text
    assert f'smsgate_link_bound{{operator="{OPERATOR}"}} 1.0' in metrics
    assert f'smsgate_link_in_flight{{operator="{OPERATOR}"}}' in metrics
    assert REGISTRY.get_sample_value("smsgate_link_window", {"operator": OPERATOR}) == 10


async def test_without_an_admin_token_the_endpoint_does_not_exist(runtime: Runtime) -> None:
    runtime.settings.admin_token = None
    transport = httpx2.ASGITransport(app=create_api(runtime))
    async with httpx2.AsyncClient(transport=transport, base_url="http://gateway") as http:
        assert (await http.get("/api/v1/links")).status_code == 404


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_second_process_on_sqlite_stands_by(
    runtime: Runtime, simulator: Simulator, database_url: str
) -> None:
    await provision(runtime.sessions, simulator.smpp_port)
    first = Managed(LinkManager(runtime, refresh_seconds=0.1, tune=fast))
    await eventually(lambda: first.status("bound"))
    # Another gateway process on the same database file: its own engine and lock handle.
    engine = make_engine(database_url)
    other_runtime = Runtime(
        settings=Settings(database_url=database_url),
        engine=engine,
        sessions=make_sessionmaker(engine),
    )
    second = Managed(LinkManager(other_runtime, refresh_seconds=0.1, tune=fast))
    try:
        await eventually(lambda: second.status("standby"))
        assert isinstance(second.manager._ownership, FileOwnership)
        await first.stop()
        await eventually(lambda: second.status("bound"))
    finally:
        await second.stop()
        await engine.dispose()
        if not first.task.done():
            await first.stop()


@pytest.mark.postgres
async def test_one_owner_per_bind_on_postgresql_and_take_over(
    simulator: Simulator, pg_database_url: str
) -> None:
    engines = [make_engine(pg_database_url) for _ in range(2)]
    runtimes = [
        Runtime(
            settings=Settings(database_url=pg_database_url),
            engine=engine,
            sessions=make_sessionmaker(engine),
        )
        for engine in engines
    ]
    await provision(runtimes[0].sessions, simulator.smpp_port)
    first = Managed(LinkManager(runtimes[0], refresh_seconds=0.1, tune=fast))
    second: Managed | None = None
    try:
        await eventually(lambda: first.status("bound"))
        second = Managed(LinkManager(runtimes[1], refresh_seconds=0.1, tune=fast))
        await eventually(lambda: second.status("standby"))
        assert isinstance(second.manager._ownership, PostgresOwnership)
        assert len(simulator.smsc.sessions()) == 1
        await first.stop()
        await eventually(lambda: second.status("bound"))
        mt_id = await send(runtimes[1], "taken over")
        await eventually(lambda: mt_status(runtimes[1], mt_id, "delivered"))
    finally:
        if second is not None:
            await second.stop()
        if not first.task.done():
            await first.stop()
        for engine in engines:
            await engine.dispose()
