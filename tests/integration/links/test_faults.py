"""What the link does when the SMSC pushes back, refuses, goes silent or drops the line."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import update
from tests.integration.links.link_env import (
    eventually,
    mt_row,
    mt_status,
    parts_of,
    provision,
    send,
    settings_for,
    start_link,
)

from smsgate.runtime import Runtime
from smsgate.simulator import Simulator
from smsgate.store.models import MtMessage

LONG = "A message long enough for three parts of the GSM alphabet. " * 7


async def test_throttled_messages_are_queued_again_and_the_link_slows_down(
    runtime: Runtime, simulator: Simulator
) -> None:
    await provision(runtime.sessions, simulator.smpp_port)
    fault = simulator.add_fault("throttle")
    link = await start_link(runtime, settings_for(simulator.smpp_port))
    try:
        mt_id = await send(runtime, "slow down")
        row = await eventually(lambda: _requeued(runtime, mt_id))
        assert row.error_code == "ESME_RTHROTTLED"
        assert row.next_attempt_at > row.updated_at
        assert link.link.state.throttled >= 1
        assert link.link.submitter.bucket.current_rate < 1000
        simulator.state.faults.remove(fault.id)
        await eventually(lambda: mt_status(runtime, mt_id, "delivered"), timeout=10)
        assert [m.text for m in simulator.inbox("359888123456")] == ["slow down"]
    finally:
        await link.stop()


async def _requeued(runtime: Runtime, mt_id: int) -> MtMessage | None:
    row = await mt_row(runtime, mt_id)
    return row if row.status == "queued" and row.attempts >= 1 else None


async def test_queue_full_is_temporary_too(runtime: Runtime, simulator: Simulator) -> None:
    await provision(runtime.sessions, simulator.smpp_port)
    fault = simulator.add_fault("queue_full")
    link = await start_link(runtime, settings_for(simulator.smpp_port))
    try:
        mt_id = await send(runtime, "full")
        row = await eventually(lambda: _requeued(runtime, mt_id))
        assert row.error_code == "ESME_RMSGQFUL"
        simulator.state.faults.remove(fault.id)
        await eventually(lambda: mt_status(runtime, mt_id, "delivered"), timeout=10)
    finally:
        await link.stop()


async def test_a_permanent_refusal_fails_the_message_with_its_error(
    runtime: Runtime, simulator: Simulator
) -> None:
    await provision(runtime.sessions, simulator.smpp_port)
    simulator.add_fault("reject", {"status": 0x0B})
    link = await start_link(runtime, settings_for(simulator.smpp_port))
    try:
        mt_id = await send(runtime, "to nowhere")
        row = await eventually(lambda: mt_status(runtime, mt_id, "failed"))
        assert row.error_code == "ESME_RINVDSTADR"
        (part,) = await parts_of(runtime, mt_id)
        assert (part.status, part.error_code) == ("failed", "ESME_RINVDSTADR")
        assert simulator.inbox("359888123456") == []
    finally:
        await link.stop()


async def test_only_the_missing_parts_are_sent_again_after_throttling(
    runtime: Runtime, simulator: Simulator
) -> None:
    await provision(runtime.sessions, simulator.smpp_port, window=1)
    # One part a second is accepted, the others throttled: a three-part message needs
    # three attempts, and no part may reach the handset twice.
    simulator.add_fault("limited_rate", {"per_second": 1})
    link = await start_link(runtime, settings_for(simulator.smpp_port, window=1))
    try:
        mt_id = await send(runtime, LONG)
        await eventually(lambda: mt_status(runtime, mt_id, "delivered"), timeout=15)
        assert [m.text for m in simulator.inbox("359888123456")] == [LONG]
        parts = await parts_of(runtime, mt_id)
        assert [p.part_no for p in parts] == [1, 2, 3]
        assert (await mt_row(runtime, mt_id)).attempts >= 2
    finally:
        await link.stop()


async def test_no_response_means_unknown_and_no_resend(
    runtime: Runtime, simulator: Simulator
) -> None:
    await provision(runtime.sessions, simulator.smpp_port)
    fault = simulator.add_fault("slow", {"delay_ms": 5000})
    settings = settings_for(simulator.smpp_port)
    link = await start_link(runtime, settings)
    try:
        mt_id = await send(runtime, "lost in the post")
        row = await eventually(lambda: mt_status(runtime, mt_id, "unknown"), timeout=10)
        assert row.error_code == "no response"
        simulator.state.faults.remove(fault.id)
        await asyncio.sleep(0)  # the link keeps going; the message is not sent again
        later = await send(runtime, "after")
        await eventually(lambda: mt_status(runtime, later, "delivered"), timeout=10)
        assert (await mt_row(runtime, mt_id)).status == "unknown"
        assert (await mt_row(runtime, mt_id)).attempts == 1
    finally:
        await link.stop()


async def test_a_dropped_connection_makes_in_flight_unknown_and_the_link_reconnects(
    runtime: Runtime, simulator: Simulator
) -> None:
    await provision(runtime.sessions, simulator.smpp_port)
    simulator.add_fault("drop_connection", {"after": 3})
    link = await start_link(runtime, settings_for(simulator.smpp_port))
    try:
        ids = [await send(runtime, f"m{n}") for n in range(10)]

        async def settled() -> bool:
            rows = [await mt_row(runtime, mt_id) for mt_id in ids]
            return all(row.status in {"delivered", "unknown"} for row in rows)

        await eventually(settled, timeout=10)
        rows = [await mt_row(runtime, mt_id) for mt_id in ids]
        unknown = [row for row in rows if row.status == "unknown"]
        assert unknown, "the submit that saw the connection drop has an unknown outcome"
        assert all(row.error_code == "connection lost" for row in unknown)
        assert link.link.state.reconnects >= 1
        delivered = [row.text for row in rows if row.status == "delivered"]
        inbox = [m.text for m in simulator.inbox("359888123456")]
        assert set(delivered) <= set(inbox)
        assert len(inbox) == len(set(inbox)), "nothing reached the handset twice"
    finally:
        await link.stop()


async def test_messages_left_submitting_by_a_dead_process_become_unknown(
    runtime: Runtime, simulator: Simulator
) -> None:
    await provision(runtime.sessions, simulator.smpp_port)
    mt_id = await send(runtime, "was in flight")
    async with runtime.sessions() as session, session.begin():
        await session.execute(
            update(MtMessage).where(MtMessage.id == mt_id).values(status="submitting")
        )
    waiting = await send(runtime, "still queued")
    link = await start_link(runtime, settings_for(simulator.smpp_port))
    try:
        await eventually(lambda: mt_status(runtime, waiting, "delivered"))
        row = await mt_row(runtime, mt_id)
        assert (row.status, row.error_code) == ("unknown", "interrupted")
        assert [m.text for m in simulator.inbox("359888123456")] == ["still queued"]
    finally:
        await link.stop()


async def test_a_refused_bind_is_retried_with_backoff(
    runtime: Runtime, simulator: Simulator
) -> None:
    await provision(runtime.sessions, simulator.smpp_port)
    fault = simulator.add_fault("refuse_bind")
    from tests.integration.links.link_env import RunningLink

    from smsgate.links.link import OperatorLink

    running = RunningLink(OperatorLink(settings_for(simulator.smpp_port), runtime))
    try:
        await eventually(lambda: _errors(running.link, 2))
        assert running.link.state.status in {"backoff", "connecting"}
        assert "bind" in running.link.state.last_error
        simulator.state.faults.remove(fault.id)
        await running.bound()
    finally:
        await running.stop()


async def test_a_wrong_password_is_a_bind_error(runtime: Runtime, simulator: Simulator) -> None:
    import dataclasses

    from tests.integration.links.link_env import RunningLink

    from smsgate.links.link import OperatorLink

    settings = dataclasses.replace(settings_for(simulator.smpp_port), password="wrong")
    running = RunningLink(OperatorLink(settings, runtime))
    try:
        await eventually(lambda: _errors(running.link, 1))
        assert "ESME_RINVPASWD" in running.link.state.last_error
    finally:
        await running.stop()


async def _errors(link: object, at_least: int) -> bool:
    return bool(link.state.errors >= at_least)  # type: ignore[attr-defined]


async def test_a_future_retry_time_is_respected(runtime: Runtime, simulator: Simulator) -> None:
    await provision(runtime.sessions, simulator.smpp_port)
    mt_id = await send(runtime, "later")
    async with runtime.sessions() as session, session.begin():
        await session.execute(
            update(MtMessage)
            .where(MtMessage.id == mt_id)
            .values(next_attempt_at=runtime.clock.now() + timedelta(hours=1))
        )
    now_id = await send(runtime, "now")
    link = await start_link(runtime, settings_for(simulator.smpp_port))
    try:
        await eventually(lambda: mt_status(runtime, now_id, "delivered"))
        assert (await mt_row(runtime, mt_id)).status == "queued"
    finally:
        await link.stop()


@pytest.mark.parametrize("kind", ["unknown_command"])
async def test_garbage_from_the_smsc_does_not_break_the_link(
    runtime: Runtime, simulator: Simulator, kind: str
) -> None:
    await provision(runtime.sessions, simulator.smpp_port)
    fault = simulator.add_fault("garbage", {"kind": kind})
    link = await start_link(runtime, settings_for(simulator.smpp_port))
    try:
        mt_id = await send(runtime, "through the noise")
        await eventually(lambda: mt_status(runtime, mt_id, "delivered"))
        simulator.state.faults.remove(fault.id)
    finally:
        await link.stop()
