"""DLR callbacks queued by a real link: the submit outcome (accepted) and the receipts
(delivered), for one-part and multipart messages, receipts before or after the responses."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from tests.factories import add_merchant, add_service
from tests.integration.links.link_env import (
    OPERATOR,
    eventually,
    mt_status,
    provision,
    settings_for,
    start_link,
)

from smsgate.runtime import Runtime
from smsgate.services.mt import queue_mt
from smsgate.simulator import DlrSettings, Simulator
from smsgate.store.models import WebhookEvent

SERVICE = 301
LONG = "A message of three parts in the GSM 7-bit alphabet. " * 8


async def send(runtime: Runtime, text: str, msisdn: str) -> int:
    async with runtime.sessions() as session, session.begin():
        mt = await queue_mt(
            session,
            operator_id=OPERATOR,
            msisdn=msisdn,
            sender="SHOP",
            text=text,
            now=runtime.clock.now(),
            merchant_id=1,
            service_id=SERVICE,
        )
    runtime.wake_links()
    return mt.id


async def callbacks(runtime: Runtime) -> list[tuple[int, str, str, str]]:
    async with runtime.sessions() as session:
        events = (await session.execute(select(WebhookEvent))).scalars().all()
    return sorted(
        (int(e.payload["id"]), e.payload["scope"], e.payload["part"], e.payload["status"])
        for e in events
    )


@pytest.mark.parametrize("before_resp", [False, True])
async def test_accepted_and_delivered_are_reported(
    runtime: Runtime, simulator: Simulator, before_resp: bool
) -> None:
    simulator.set_dlr(DlrSettings(before_resp=before_resp))
    await provision(runtime.sessions, simulator.smpp_port)
    async with runtime.sessions() as session, session.begin():
        await add_merchant(session, 1)
        await add_service(
            session, SERVICE, type="bulk", keyword="", callback_urls={"dlr": "http://x/dlr"}
        )
    link = await start_link(runtime, settings_for(simulator.smpp_port))
    try:
        short = [await send(runtime, f"hello {n}", f"35988800000{n}") for n in range(3)]
        long = await send(runtime, LONG, "359888000009")
        for mt_id in [*short, long]:
            await eventually(lambda mt_id=mt_id: mt_status(runtime, mt_id, "delivered"))
    finally:
        await link.stop()
    expected = {
        (mt_id, "message", "1", status) for mt_id in short for status in ("accepted", "delivered")
    }
    for status in ("accepted", "delivered"):
        expected |= {(long, "part", str(n), status) for n in (1, 2, 3)}
        expected.add((long, "message", "", status))
    assert await callbacks(runtime) == sorted(expected)  # each exactly once
