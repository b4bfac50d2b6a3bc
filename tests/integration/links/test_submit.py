"""MTs through a real link to the simulator: encodings, concatenation methods, receipts."""

from __future__ import annotations

import pytest
from tests.integration.links.link_env import (
    eventually,
    mt_status,
    parts_of,
    provision,
    send,
    settings_for,
    start_link,
)

from smsgate.runtime import Runtime
from smsgate.simulator import DlrSettings, Simulator

pytestmark = pytest.mark.usefixtures("simulator")

LONG_GSM = "Long message in the GSM 7-bit alphabet. " * 6  # 240 septets: 2 parts
LONG_UCS2 = "Дълго съобщение на кирилица, което не се събира в едно. " * 3  # 3 parts


async def inbox_texts(simulator: Simulator, msisdn: str = "359888123456") -> list[str]:
    return [message.text for message in simulator.inbox(msisdn)]


async def test_a_gsm7_message_is_submitted_and_delivered(
    runtime: Runtime, simulator: Simulator
) -> None:
    await provision(runtime.sessions, simulator.smpp_port)
    link = await start_link(runtime, settings_for(simulator.smpp_port))
    try:
        mt_id = await send(runtime, "Hello {world} €5")
        row = await eventually(lambda: mt_status(runtime, mt_id, "delivered"))
        assert row.error_code == ""
        assert await inbox_texts(simulator) == ["Hello {world} €5"]
        (part,) = await parts_of(runtime, mt_id)
        assert part.status == "delivered"
        assert part.operator_message_id
        assert part.submitted_at is not None and part.submitted_at.tzinfo is not None
        assert abs((part.submitted_at - runtime.clock.now()).total_seconds()) < 30
        assert link.link.state.submitted == 1
        assert link.link.state.receipts_received == 1
    finally:
        await link.stop()


@pytest.mark.parametrize("concat", ["udh", "sar", "payload"])
async def test_long_messages_arrive_whole_by_each_concatenation_method(
    runtime: Runtime, simulator: Simulator, concat: str
) -> None:
    await provision(runtime.sessions, simulator.smpp_port, concat=concat)
    link = await start_link(runtime, settings_for(simulator.smpp_port, concat=concat))
    try:
        gsm = await send(runtime, LONG_GSM)
        ucs2 = await send(runtime, LONG_UCS2, msisdn="359888000002")
        await eventually(lambda: mt_status(runtime, gsm, "delivered"))
        await eventually(lambda: mt_status(runtime, ucs2, "delivered"))
        assert await inbox_texts(simulator) == [LONG_GSM]
        assert await inbox_texts(simulator, "359888000002") == [LONG_UCS2]
        expected_parts = (1, 1) if concat == "payload" else (2, 3)
        assert len(await parts_of(runtime, gsm)) == expected_parts[0]
        assert len(await parts_of(runtime, ucs2)) == expected_parts[1]
        assert all(p.status == "delivered" for p in await parts_of(runtime, ucs2))
    finally:
        await link.stop()


async def test_receipts_before_their_responses_are_matched(
    runtime: Runtime, simulator: Simulator
) -> None:
    simulator.set_dlr(DlrSettings(before_resp=True))
    await provision(runtime.sessions, simulator.smpp_port)
    link = await start_link(runtime, settings_for(simulator.smpp_port))
    try:
        ids = [await send(runtime, f"early {n}") for n in range(20)]
        for mt_id in ids:
            await eventually(lambda mt_id=mt_id: mt_status(runtime, mt_id, "delivered"))
    finally:
        await link.stop()


@pytest.mark.parametrize("dlr_id_format", ["hex", "dec"])
async def test_receipt_ids_in_another_base_are_matched(
    runtime: Runtime, dlr_id_format: str
) -> None:
    from tests.integration.links.link_env import sim_document

    from smsgate.simulator import SimulatorOptions, config_from_mapping

    simulator = Simulator(
        config_from_mapping(sim_document(dlr_id_format=dlr_id_format), options=SimulatorOptions())
    )
    await simulator.start("127.0.0.1", 0)
    await provision(runtime.sessions, simulator.smpp_port, dlr_id_format=dlr_id_format)
    link = await start_link(runtime, settings_for(simulator.smpp_port, dlr_id_format=dlr_id_format))
    try:
        mt_id = await send(runtime, LONG_GSM)
        await eventually(lambda: mt_status(runtime, mt_id, "delivered"))
    finally:
        await link.stop()
        await simulator.stop()


async def test_an_undelivered_receipt_fails_the_whole_message(
    runtime: Runtime, simulator: Simulator
) -> None:
    simulator.set_dlr(DlrSettings(outcome="UNDELIV", error_code=27))
    await provision(runtime.sessions, simulator.smpp_port)
    link = await start_link(runtime, settings_for(simulator.smpp_port))
    try:
        mt_id = await send(runtime, LONG_GSM)
        row = await eventually(lambda: mt_status(runtime, mt_id, "undelivered"))
        assert row.error_code == "027"
    finally:
        await link.stop()


async def test_without_dlr_request_a_message_stays_submitted(
    runtime: Runtime, simulator: Simulator
) -> None:
    await provision(runtime.sessions, simulator.smpp_port, dlr_request=False)
    link = await start_link(runtime, settings_for(simulator.smpp_port, dlr_request=False))
    try:
        mt_id = await send(runtime, "no receipt please")
        await eventually(lambda: mt_status(runtime, mt_id, "submitted"))
        assert await eventually(lambda: inbox_texts(simulator))
    finally:
        await link.stop()
    assert (await mt_status(runtime, mt_id, "submitted")) is not None


async def test_transmitter_and_receiver_binds(runtime: Runtime, simulator: Simulator) -> None:
    await provision(runtime.sessions, simulator.smpp_port, bind_mode="transmitter_receiver")
    link = await start_link(
        runtime, settings_for(simulator.smpp_port, bind_mode="transmitter_receiver")
    )
    try:
        bound = link.link.bound
        assert bound is not None and bound.transmitter is not bound.receiver
        mt_id = await send(runtime, "two connections")
        await eventually(lambda: mt_status(runtime, mt_id, "delivered"))
    finally:
        await link.stop()


async def test_alphanumeric_sender_and_window_of_one(
    runtime: Runtime, simulator: Simulator
) -> None:
    await provision(runtime.sessions, simulator.smpp_port, window=1)
    link = await start_link(runtime, settings_for(simulator.smpp_port, window=1))
    try:
        ids = [await send(runtime, f"n{n}", sender="SHOP") for n in range(30)]
        for mt_id in ids:
            await eventually(lambda mt_id=mt_id: mt_status(runtime, mt_id, "delivered"))
        messages = simulator.inbox("359888123456")
        assert [m.text for m in messages] == [f"n{n}" for n in range(30)]
        assert messages[0].sender == "SHOP"
    finally:
        await link.stop()
