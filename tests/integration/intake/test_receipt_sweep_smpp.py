"""The real path: an MT sent over SMPP to the built-in simulator, its receipt pushed to the HTTP
intake while the submit_sm_resp is still on its way, and the worker, as configured by default,
applying it once the link has written the part. Both backends."""

from __future__ import annotations

import asyncio
import hashlib
import time

import httpx2
from sqlalchemy import select, update
from tests.factories import add_merchant, add_service
from tests.integration.links.link_env import (
    OPERATOR,
    eventually,
    mt_status,
    parts_of,
    provision,
    runtime,
    settings_for,
    simulator,
    start_link,
)

from smsgate.api.app import create_api
from smsgate.runtime import Runtime
from smsgate.services.mt import queue_mt
from smsgate.simulator import Simulator, SimulatorOptions
from smsgate.simulator.receipts import ids_for
from smsgate.store.models import DeliveryReport, Job, Operator, WebhookEvent
from smsgate.worker.runner import Worker

__all__ = ["runtime", "simulator"]  # the fixtures of link_env

SERVICE = 301
SECRET = "intake-sim"
RESPONSE_DELAY_MS = 1000


async def test_a_receipt_pushed_over_http_before_the_submit_outcome_is_applied(
    runtime: Runtime, simulator: Simulator
) -> None:
    await provision(runtime.sessions, simulator.smpp_port, dlr_request=False)
    async with runtime.sessions() as session, session.begin():
        await session.execute(
            update(Operator).values(intake_secret_hash=hashlib.sha256(SECRET.encode()).hexdigest())
        )
        await add_merchant(session, 1)
        await add_service(
            session, SERVICE, type="bulk", keyword="", callback_urls={"dlr": "http://x/dlr"}
        )
    # The simulator numbers its messages from first_message_id: this one is the first.
    message_id = ids_for(SimulatorOptions().first_message_id, None)[0]
    simulator.add_fault("slow", {"delay_ms": RESPONSE_DELAY_MS})
    worker = Worker(runtime, {})  # the sweep as configured by default
    assert worker.receipt_sweep is not None
    working = asyncio.create_task(worker.run())
    link = await start_link(runtime, settings_for(simulator.smpp_port, dlr_request=False))
    transport = httpx2.ASGITransport(app=create_api(runtime))
    try:
        async with httpx2.AsyncClient(transport=transport, base_url="http://gw") as client:
            async with runtime.sessions() as session, session.begin():
                mt = await queue_mt(
                    session,
                    operator_id=OPERATOR,
                    msisdn="359888000001",
                    sender="SHOP",
                    text="hello",
                    now=runtime.clock.now(),
                    merchant_id=1,
                    service_id=SERVICE,
                )
            runtime.wake_links()
            await eventually(lambda: mt_status(runtime, mt.id, "submitting"))
            response = await client.post(
                f"/operators/{OPERATOR}/dlr",
                json={"message_id": message_id, "status": "DELIVRD"},
                headers={"Authorization": f"Bearer {SECRET}"},
            )
            assert response.status_code == 200, response.text
            assert response.json()["matched"] is False  # the response is still delayed
            await eventually(lambda: mt_status(runtime, mt.id, {"submitted", "delivered"}))
            written = time.monotonic()
            await eventually(lambda: mt_status(runtime, mt.id, "delivered"), timeout=5)
            applied_after = time.monotonic() - written
    finally:
        await link.stop()
        worker.stop()
        await asyncio.wait_for(working, 10)
    # The sweep runs every half second: the merchant hears within about one.
    assert applied_after < 2.0
    [part] = await parts_of(runtime, mt.id)
    assert (part.operator_message_id, part.status) == (message_id, "delivered")
    async with runtime.sessions() as session:
        report = (await session.execute(select(DeliveryReport))).scalar_one()
        events = {e.id: e for e in (await session.execute(select(WebhookEvent))).scalars()}
        jobs = (await session.execute(select(Job).order_by(Job.id))).scalars().all()
    assert report.mt_part_id == part.id
    # Queued in this order, each once (the delivery jobs' order: event ids are random).
    statuses = [events[job.payload["event_id"]].payload["status"] for job in jobs]
    assert statuses == ["accepted", "delivered"]
    assert worker.receipt_sweep.applied == 1
