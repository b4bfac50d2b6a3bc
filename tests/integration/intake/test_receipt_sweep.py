"""Receipts pushed to the HTTP intake before the link has written their part's operator message
id: the worker's sweep applies them once the part is written (services/dlr_sweep.py,
worker/receipt_sweep.py), exactly once even with two sweeps at once, within its window only.
Both backends; the parts are written by the link's own writer (links/writer.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx2
import pytest
from sqlalchemy import TextClause, bindparam, func, select, text
from tests.factories import T0, add_merchant, add_operator, add_service
from tests.integration.links.link_env import eventually

from smsgate.api.app import create_api
from smsgate.app import build_runtime
from smsgate.config import Settings
from smsgate.domain.clock import FakeClock
from smsgate.links.state import LinkState
from smsgate.links.writer import MtOutcome, PartOutcome, ResultWriter
from smsgate.runtime import Runtime
from smsgate.services.dlr_sweep import apply_waiting_receipts, waiting_receipts
from smsgate.services.mt import queue_mt
from smsgate.services.webhooks import DELIVER_KIND
from smsgate.store.models import DeliveryReport, Job, MtMessage, MtPart, WebhookEvent
from smsgate.store.types import UTCDateTime
from smsgate.worker.receipt_sweep import ReceiptSweep
from smsgate.worker.runner import Worker

OP = "op-bg"
SERVICE = 201
AUTH = {"Authorization": "Bearer intake-1"}
WINDOW = 600.0
INDEX = "ix_delivery_reports_mt_part_id_received_at"


@pytest.fixture
async def runtime(database_url: str) -> AsyncIterator[Runtime]:
    settings = Settings(database_url=database_url, receipt_sweep_window_seconds=WINDOW)
    runtime = build_runtime(settings, clock=FakeClock(T0))
    async with runtime.sessions() as session, session.begin():
        await add_operator(session, OP)
        await add_merchant(session)
        await add_service(
            session, SERVICE, type="bulk", keyword="", callback_urls={"dlr": "https://shop/dlr"}
        )
    yield runtime
    await runtime.engine.dispose()


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=create_api(runtime))
    async with httpx2.AsyncClient(transport=transport, base_url="http://gw") as client:
        yield client


def fake_clock(runtime: Runtime) -> FakeClock:
    assert isinstance(runtime.clock, FakeClock)
    return runtime.clock


async def submitting_mt(runtime: Runtime, text: str = "hello") -> int:
    """An MT the link is sending: its submit outcome not written yet."""
    async with runtime.sessions() as session, session.begin():
        mt = await queue_mt(
            session,
            operator_id=OP,
            msisdn="359888123456",
            sender="SHOP",
            text=text,
            now=runtime.clock.now(),
            merchant_id=1,
            service_id=SERVICE,
        )
        mt.status = "submitting"
    return mt.id


async def write_outcomes(runtime: Runtime, sent: dict[int, str]) -> None:
    """The link's writer records the SMSC's acceptance of these MTs (MT id: message id)."""
    state = LinkState(OP, "127.0.0.1", 0, "transceiver", 10, 100)
    writer = ResultWriter(OP, runtime.sessions, runtime.clock, asyncio.Lock(), state)
    for mt_id, message_id in sent.items():
        writer.add(MtOutcome(mt_id, "submitted", "", [PartOutcome(1, "submitted", message_id, "")]))
    await writer.flush()
    assert writer.batches == 1


async def post_receipt(client: httpx2.AsyncClient, message_id: str, word: str = "DELIVRD") -> None:
    response = await client.post(
        f"/operators/{OP}/dlr", json={"message_id": message_id, "status": word}, headers=AUTH
    )
    assert response.status_code == 200, response.text
    assert response.json()["matched"] is False


async def status(runtime: Runtime, mt_id: int) -> str:
    async with runtime.sessions() as session:
        return (await session.get_one(MtMessage, mt_id, populate_existing=True)).status


async def delivered(runtime: Runtime, mt_id: int) -> bool:
    return await status(runtime, mt_id) == "delivered"


async def callbacks(runtime: Runtime) -> dict[int, list[str]]:
    """The DLR callbacks queued, by MT, in the order of their delivery jobs."""
    async with runtime.sessions() as session:
        events = {e.id: e for e in (await session.execute(select(WebhookEvent))).scalars()}
        jobs = (await session.execute(select(Job).order_by(Job.id))).scalars().all()
    assert [job.kind for job in jobs] == [DELIVER_KIND] * len(events)
    by_mt: dict[int, list[str]] = {}
    for job in jobs:
        payload = events[job.payload["event_id"]].payload
        by_mt.setdefault(int(payload["id"]), []).append(payload["status"])
    return by_mt


async def unmatched(runtime: Runtime) -> list[str]:
    async with runtime.sessions() as session:
        rows = await session.execute(
            select(DeliveryReport.operator_message_id)
            .where(DeliveryReport.mt_part_id.is_(None))
            .order_by(DeliveryReport.id)
        )
        return list(rows.scalars())


async def test_an_early_http_receipt_is_applied_by_the_worker_once_its_part_is_written(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    mt_id = await submitting_mt(runtime)
    await post_receipt(client, "m-1")
    worker = Worker(runtime, {}, receipt_sweep_seconds=0.05)
    assert worker.receipt_sweep is not None
    running = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(0.3)  # sweeps while the part is unknown change nothing
        assert await status(runtime, mt_id) == "submitting"
        await write_outcomes(runtime, {mt_id: "m-1"})
        assert await unmatched(runtime) == ["m-1"]  # not the link's own receipt
        await eventually(lambda: delivered(runtime, mt_id), timeout=5)
        await asyncio.sleep(0.3)  # and the sweeps after it find nothing more to do
    finally:
        worker.stop()
        await asyncio.wait_for(running, 10)
    assert worker.receipt_sweep.applied == 1
    assert await callbacks(runtime) == {mt_id: ["accepted", "delivered"]}
    assert await unmatched(runtime) == []
    async with runtime.sessions() as session:
        report = (await session.execute(select(DeliveryReport))).scalar_one()
        part = (await session.execute(select(MtPart))).scalar_one()
    assert (report.mt_part_id, part.status) == (part.id, "delivered")


async def test_two_sweeps_at_once_apply_each_receipt_once(
    runtime: Runtime, client: httpx2.AsyncClient, backend: str
) -> None:
    mt_ids = [await submitting_mt(runtime, f"hello {n}") for n in range(12)]
    for n in range(len(mt_ids)):
        await post_receipt(client, f"m-{n}", "ENROUTE")
        await post_receipt(client, f"m-{n}")
    await write_outcomes(runtime, {mt_id: f"m-{n}" for n, mt_id in enumerate(mt_ids)})
    other = build_runtime(runtime.settings, clock=runtime.clock)  # another process's pool
    sweep = ReceiptSweep(other, interval_seconds=1, window_seconds=WINDOW)
    now = runtime.clock.now()
    try:
        async with runtime.sessions() as session, session.begin():
            waiting = await waiting_receipts(session, since=now - timedelta(seconds=WINDOW))
            assert len(waiting) == 24
            # Nine: the fifth MT's first receipt and not its second, which the other sweep
            # must then leave alone (its message is held here).
            held = await apply_waiting_receipts(session, waiting[:9], now=now)
            assert held == 9
            other_sweep = asyncio.create_task(sweep.sweep())
            await asyncio.sleep(0.3)
            if backend == "postgres":
                # Rows held by the first sweep are skipped, not waited for.
                assert other_sweep.done()
        swept = await other_sweep
        after = await sweep.sweep()
    finally:
        await other.engine.dispose()
    # SQLite: the second sweep waits for the first's write lock, then finds the rest.
    assert (swept, after) == ((14, 1) if backend == "postgres" else (15, 0))
    assert await unmatched(runtime) == []
    assert await callbacks(runtime) == {
        mt_id: ["accepted", "enroute", "delivered"] for mt_id in mt_ids
    }
    assert {await status(runtime, mt_id) for mt_id in mt_ids} == {"delivered"}


async def test_a_receipt_older_than_the_window_is_left_alone(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    old, recent = await submitting_mt(runtime, "old"), await submitting_mt(runtime, "recent")
    await post_receipt(client, "m-old")
    fake_clock(runtime).advance(WINDOW - 120)
    await post_receipt(client, "m-recent")
    await write_outcomes(runtime, {old: "m-old", recent: "m-recent"})
    fake_clock(runtime).advance(121)  # m-old is out of the window, m-recent two minutes old
    sweep = ReceiptSweep(runtime, interval_seconds=1, window_seconds=WINDOW)
    # The frequent sweep looks back a minute; the full one, once a minute, the whole window.
    assert await sweep.sweep(full=False) == 0
    assert await sweep.sweep(full=True) == 1
    assert (await status(runtime, old), await status(runtime, recent)) == (
        "submitted",
        "delivered",
    )
    assert await unmatched(runtime) == ["m-old"]
    assert await callbacks(runtime) == {old: ["accepted"], recent: ["accepted", "delivered"]}


async def test_a_receipt_of_an_unknown_message_stays_unmatched_and_then_costs_nothing(
    runtime: Runtime, client: httpx2.AsyncClient, backend: str
) -> None:
    mt_id = await submitting_mt(runtime)
    await write_outcomes(runtime, {mt_id: "m-1"})
    await post_receipt(client, "never-sent")
    sweep = ReceiptSweep(runtime, interval_seconds=1, window_seconds=WINDOW)
    assert await sweep.sweep() == 0
    assert await unmatched(runtime) == ["never-sent"]
    assert await callbacks(runtime) == {mt_id: ["accepted"]}
    assert await status(runtime, mt_id) == "submitted"
    # Out of the window it is not among the rows a sweep reads: the window's start is part of
    # the index's condition, so older unmatched receipts are never read.
    fake_clock(runtime).advance(WINDOW + 1)
    since = runtime.clock.now() - timedelta(seconds=WINDOW)
    async with runtime.sessions() as session, session.begin():
        swept = select(func.count()).where(
            DeliveryReport.mt_part_id.is_(None), DeliveryReport.received_at >= since
        )
        assert (await session.execute(swept)).scalar_one() == 0
        if backend == "postgres":
            # A table this small is read whole; the question is whether the index can serve.
            await session.execute(text("SET LOCAL enable_seqscan = off"))
        rows = await session.execute(_plan(backend), {"since": since})
        plan = " ".join(str(row[-1]) for row in rows)
    assert INDEX in plan, plan
    assert "received_at" in plan.split(INDEX, 1)[1], plan
    assert await sweep.sweep() == 0
    assert await unmatched(runtime) == ["never-sent"]


def _plan(backend: str) -> TextClause:
    """The plan of the sweep's look-up of the window's unmatched receipts."""
    query = (
        "SELECT id FROM delivery_reports WHERE mt_part_id IS NULL AND received_at >= :since "
        "ORDER BY id LIMIT 500"
    )
    explain = "EXPLAIN QUERY PLAN" if backend == "sqlite" else "EXPLAIN"
    return text(f"{explain} {query}").bindparams(bindparam("since", type_=UTCDateTime()))
