"""Receipts from an SMSC whose window is 1: it sends the next deliver_sm only after our
deliver_sm_resp, which we write only once the receipt is committed. The link must not sit on
each receipt waiting for others that cannot come."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select
from tests.integration.links.link_env import (
    OPERATOR,
    eventually,
    provision,
    settings_for,
    sim_document,
    start_link,
)

from smsgate.runtime import Runtime
from smsgate.services.mt import queue_mt
from smsgate.simulator import DlrSettings, Simulator, SimulatorOptions, config_from_mapping
from smsgate.store.models import MtMessage

RECEIPTS = 300
# What proves the point is that every batch starts at once (asserted below); the rates only
# say that nothing else holds receipts back, with room for a slow, busy machine. Waiting 10 ms
# for more before each batch, as the receiver once did, kept a window of 1 below 100 per
# second on any machine (62 on SQLite, 54 on PostgreSQL here); without the wait a receipt costs
# its transaction alone (600-900 per second on SQLite, 120-450 on PostgreSQL on this machine
# of two busy cores).
MIN_RATE = {"sqlite": 150, "postgres": 40}


@pytest.fixture
async def window_one() -> AsyncIterator[Simulator]:
    options = SimulatorOptions(window=1, dlr=DlrSettings(), inbox_limit=0)
    sim = Simulator(config_from_mapping(sim_document(), options=options))
    await sim.start("127.0.0.1", 0)
    try:
        yield sim
    finally:
        await sim.stop()


async def _delivered(runtime: Runtime) -> int:
    async with runtime.sessions() as session:
        query = select(func.count()).where(MtMessage.status == "delivered")
        return int((await session.execute(query)).scalar_one())


async def test_a_window_of_one_is_answered_receipt_by_receipt(
    runtime: Runtime, window_one: Simulator, backend: str
) -> None:
    port = window_one.smpp_port
    # The receipts wait until every MT is submitted, so that what is timed is them alone.
    dispatcher = window_one.smsc.dispatcher
    await dispatcher.stop()
    await provision(runtime.sessions, port, tps=5000, window=100)
    link = await start_link(runtime, settings_for(port, tps=5000, window=100))
    state = link.link.state
    loop = asyncio.get_running_loop()
    try:
        async with runtime.sessions() as session, session.begin():
            for n in range(RECEIPTS):
                await queue_mt(
                    session,
                    operator_id=OPERATOR,
                    msisdn="359888123456",
                    sender="1851",
                    text=f"n{n}",
                    now=runtime.clock.now(),
                )
        runtime.wake_links()
        await eventually(lambda: _ready(state.submitted == RECEIPTS), timeout=20)
        await link.link.submitter.writer.flush()
        assert state.receipts_received == 0
        windows = link.link.receiver.receipt_windows
        started_at_once = windows.started_on_full_window
        dispatcher.start()
        await eventually(lambda: _ready(state.receipts_received > 0), interval=0.001)
        first = loop.time()
        await eventually(
            lambda: _ready(state.receipts_received == RECEIPTS), timeout=10, interval=0.005
        )
        elapsed = loop.time() - first
        rate = (RECEIPTS - 1) / elapsed
        # Each receipt was the whole window: its batch started without waiting for more.
        assert windows.started_on_full_window - started_at_once == RECEIPTS
        assert rate > MIN_RATE[backend], f"{rate:.0f} receipts/s through a window of 1"
        assert await eventually(lambda: _ready(window_one.stats()["dlrs_acknowledged"] == RECEIPTS))
        assert await _delivered(runtime) == RECEIPTS
        assert window_one.stats()["dlrs_failed"] == 0
    finally:
        await link.stop()


async def _ready(value: bool) -> bool:
    return value
