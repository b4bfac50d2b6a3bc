"""DLR callbacks of bulk messages: operator receipts (HTTP intake) → message state → signed
callbacks delivered by the worker to the merchant's DLR script on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx2
import pytest
from sqlalchemy import select
from tests.integration.bulk.bulk_env import BG_NUMBER, MERCHANT_ID, SERVICE_ID, provision
from tests.integration.bulk.callback_receiver import CallbackReceiver

from smsgate.domain.clock import FakeClock
from smsgate.runtime import Runtime
from smsgate.services.dlr import IncomingReceipt, notify_submit_outcomes, receive_receipt
from smsgate.store.models import MtMessage, MtPart, WebhookEvent
from smsgate.worker.runner import Worker, default_handlers

INTAKE = {"Authorization": "Bearer intake-1"}


@pytest.fixture
async def receiver() -> AsyncIterator[CallbackReceiver]:
    receiver = await CallbackReceiver.start()
    yield receiver
    await receiver.close()


async def accept(client: httpx2.AsyncClient, text: str) -> int:
    response = await client.get(
        "/users/send_bulk.php",
        params={
            "user_id": MERCHANT_ID,
            "service_id": SERVICE_ID,
            "msisdn": BG_NUMBER,
            "text": text,
            "extended": "yes",
        },
    )
    assert response.text.startswith("MSG_OK:"), response.text
    return int(response.text.split(":")[1])


async def link_submitted(runtime: Runtime, mt_id: int, operator_ids: list[str]) -> None:
    """What the SMPP link records when the SMSC accepts each part (stands in for the link)."""
    now = runtime.clock.now()
    async with runtime.sessions() as session, session.begin():
        mt = await session.get_one(MtMessage, mt_id)
        assert mt.parts == len(operator_ids)
        mt.status = "submitted"
        for number, operator_message_id in enumerate(operator_ids, start=1):
            session.add(
                MtPart(
                    mt_id=mt_id,
                    part_no=number,
                    operator_id=mt.operator_id,
                    operator_message_id=operator_message_id,
                    status="submitted",
                    submitted_at=now,
                )
            )


async def push_dlr(client: httpx2.AsyncClient, message_id: str, word: str, err: str = "") -> None:
    response = await client.post(
        "/operators/sim-bg/dlr",
        json={"message_id": message_id, "status": word, "error_code": err},
        headers=INTAKE,
    )
    assert response.status_code == 200, response.text
    assert response.json()["matched"] is True


async def deliver_callbacks(runtime: Runtime) -> None:
    worker = Worker(runtime, default_handlers(runtime), concurrency=4)
    try:
        await worker.run_pending()
    finally:
        await worker.aclose()


async def test_multipart_reported_per_part_and_as_a_whole(
    runtime: Runtime,
    client: httpx2.AsyncClient,
    clock: FakeClock,
    receiver: CallbackReceiver,
) -> None:
    async with runtime.sessions() as session, session.begin():
        await provision(session, max_parts=3, dlr_url=receiver.url)
    mt_id = await accept(client, "x" * 200)  # 2 parts
    await link_submitted(runtime, mt_id, ["m-1", "m-2"])
    clock.advance(5)
    await push_dlr(client, "m-1", "DELIVRD")
    clock.advance(5)
    await push_dlr(client, "m-2", "UNDELIV", "005")
    await deliver_callbacks(runtime)
    received = await receiver.wait_for(3)
    assert len(received) == 3
    by_scope = sorted(received, key=lambda f: (f["scope"], f["part"]))
    whole, part1, part2 = by_scope
    for fields in received:
        assert fields["id"] == str(mt_id)
        assert fields["msisdn"] == BG_NUMBER
        assert fields["parts"] == "2"
        assert fields["event_type"] == "message.dlr"
        assert fields["event_id"].startswith("evt_")
        assert fields["submitted_at"] == (clock.now() - timedelta(seconds=10)).isoformat()
    assert (part1["scope"], part1["part"], part1["status"], part1["error_code"]) == (
        "part",
        "1",
        "delivered",
        "",
    )
    assert part1["operator_message_id"] == "m-1"
    assert (part2["part"], part2["status"], part2["error_code"]) == ("2", "undelivered", "005")
    assert (whole["scope"], whole["part"], whole["status"], whole["error_code"]) == (
        "message",
        "",
        "undelivered",
        "005",
    )
    assert whole["done_at"] == clock.now().isoformat()


async def test_single_part_message_gets_one_callback_per_change(
    runtime: Runtime, client: httpx2.AsyncClient, clock: FakeClock
) -> None:
    async with runtime.sessions() as session, session.begin():
        await provision(session, dlr_url="https://shop.example/dlr")
    mt_id = await accept(client, "Your invoice is ready")
    await link_submitted(runtime, mt_id, ["abc"])
    async with runtime.sessions() as session, session.begin():
        now = clock.now()
        for state in ("enroute", "delivered", "delivered"):
            outcome = await receive_receipt(
                session, IncomingReceipt("sim-bg", "abc", state), now=now
            )
            assert outcome.mt_id == mt_id
    async with runtime.sessions() as session:
        events = (
            (await session.execute(select(WebhookEvent).order_by(WebhookEvent.created_at)))
            .scalars()
            .all()
        )
        mt = await session.get_one(MtMessage, mt_id)
    assert mt.status == "delivered"
    # A repeated final receipt changes nothing and tells nobody.
    assert [e.payload["status"] for e in events] == ["enroute", "delivered"]
    assert {e.payload["scope"] for e in events} == {"message"}
    assert {e.url for e in events} == {"https://shop.example/dlr"}
    assert events[1].payload["part"] == "1"
    assert events[1].payload["operator_message_id"] == "abc"


async def test_no_dlr_url_no_callback(
    runtime: Runtime, client: httpx2.AsyncClient, clock: FakeClock
) -> None:
    async with runtime.sessions() as session, session.begin():
        await provision(session)
    mt_id = await accept(client, "Hello")
    await link_submitted(runtime, mt_id, ["q1"])
    await push_dlr(client, "q1", "DELIVRD")
    async with runtime.sessions() as session:
        assert (await session.execute(select(WebhookEvent))).scalars().all() == []
        assert (await session.get_one(MtMessage, mt_id)).status == "delivered"


async def test_rest_message_shows_the_dlr_history(
    runtime: Runtime, client: httpx2.AsyncClient, clock: FakeClock
) -> None:
    async with runtime.sessions() as session, session.begin():
        await provision(session, max_parts=2)
    mt_id = await accept(client, "y" * 170)
    await link_submitted(runtime, mt_id, ["h1", "h2"])
    await push_dlr(client, "h2", "DELIVRD")
    clock.advance(1)
    await push_dlr(client, "h1", "EXPIRED", "0x0A")
    response = await client.get(f"/api/v1/messages/{mt_id}", headers={"X-API-Key": "k-123"})
    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["status"], body["parts"], body["error_code"]) == (
        mt_id,
        "expired",
        2,
        "0x0A",
    )
    assert [(r["part"], r["status"], r["error_code"]) for r in body["dlr_history"]] == [
        (2, "delivered", ""),
        (1, "expired", "0x0A"),
    ]
    assert [(p["part"], p["status"]) for p in body["part_states"]] == [
        (1, "expired"),
        (2, "delivered"),
    ]
    other = await client.get(f"/api/v1/messages/{mt_id}", headers={"X-API-Key": "nope"})
    assert other.status_code == 401


async def test_submit_outcomes_are_reported_as_accepted_or_failed(
    runtime: Runtime, client: httpx2.AsyncClient, clock: FakeClock
) -> None:
    async with runtime.sessions() as session, session.begin():
        await provision(session, max_parts=2, dlr_url="https://shop.example/dlr")
    two_parts = await accept(client, "p" * 200)
    refused = await accept(client, "Hello")
    await link_submitted(runtime, two_parts, ["s1", "s2"])
    async with runtime.sessions() as session, session.begin():
        mt = await session.get_one(MtMessage, refused)
        mt.status, mt.error_code = "failed", "ESME_RINVDSTADR"
        session.add(
            MtPart(
                mt_id=refused,
                part_no=1,
                operator_id="sim-bg",
                status="failed",
                error_code="ESME_RINVDSTADR",
                submitted_at=clock.now(),
                done_at=clock.now(),
            )
        )
        await session.flush()
        assert await notify_submit_outcomes(session, [two_parts, refused], now=clock.now()) == 4
    async with runtime.sessions() as session:
        events = (await session.execute(select(WebhookEvent))).scalars().all()
    seen = sorted(
        (int(e.payload["id"]), e.payload["scope"], e.payload["part"], e.payload["status"])
        for e in events
    )
    assert seen == [
        (two_parts, "message", "", "accepted"),
        (two_parts, "part", "1", "accepted"),
        (two_parts, "part", "2", "accepted"),
        (refused, "message", "1", "failed"),
    ]
    failed = next(e.payload for e in events if int(e.payload["id"]) == refused)
    assert (failed["error_code"], failed["done_at"]) == ("ESME_RINVDSTADR", clock.now().isoformat())
