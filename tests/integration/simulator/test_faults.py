"""Fault scenarios switched on at run time, seen from an ESME over a real socket."""

from __future__ import annotations

import asyncio

import pytest
from tests.integration.simulator.sim_env import TestEsme, bound_esme, document

from smsgate.simulator import Simulator, config_from_mapping
from smsgate.smpp.constants import CommandStatus
from smsgate.smpp.errors import ConnectionLost
from smsgate.smpp.pdu import BindTransceiver

S = CommandStatus


@pytest.mark.parametrize(
    ("scenario", "params", "status"),
    [
        ("throttle", {}, S.ESME_RTHROTTLED),
        ("queue_full", {}, S.ESME_RMSGQFUL),
        ("reject", {}, S.ESME_RSUBMITFAIL),
        ("reject", {"status": S.ESME_RINVDSTADR}, S.ESME_RINVDSTADR),
    ],
)
async def test_a_refusing_scenario_answers_its_status(
    sim: Simulator, scenario: str, params: dict[str, int], status: int
) -> None:
    sim.add_fault(scenario, params)
    async with bound_esme(sim.smpp_port) as esme:
        refused = await esme.submit(b"no")
        sim.clear_faults()
        accepted = await esme.submit(b"yes")
    assert (refused.command_status, accepted.command_status) == (status, 0)
    assert [m.text for m in sim.inbox("359888123456")] == ["yes"]
    assert sim.stats()["submits_refused"] == 1


async def test_a_fault_for_another_operator_changes_nothing(sim: Simulator) -> None:
    sim.add_fault("throttle", operator="sim-ro")
    async with bound_esme(sim.smpp_port) as esme:
        assert (await esme.submit(b"fine")).command_status == 0


async def test_slow_answers_after_the_delay(sim: Simulator) -> None:
    sim.add_fault("slow", {"delay_ms": 200})
    async with bound_esme(sim.smpp_port) as esme:
        loop = asyncio.get_running_loop()
        started = loop.time()
        response = await esme.submit(b"slowly")
        assert response.command_status == 0
        assert loop.time() - started >= 0.19


async def test_refuse_bind(sim: Simulator) -> None:
    sim.add_fault("refuse_bind")
    esme = TestEsme()
    await esme.connect(sim.smpp_port)
    try:
        assert (await esme.bind()).command_status == S.ESME_RBINDFAIL
    finally:
        await esme.close()


async def test_drop_connection_after_some_submits_then_recover(sim: Simulator) -> None:
    sim.add_fault("drop_connection", {"after": 2})
    async with bound_esme(sim.smpp_port) as esme:
        assert (await esme.submit(b"1")).command_status == 0
        assert (await esme.submit(b"2")).command_status == 0
        with pytest.raises(ConnectionLost):
            await esme.submit(b"3")
    assert sim.state.faults.list() == []  # "once" by default: it switched itself off
    async with bound_esme(sim.smpp_port) as esme:
        assert (await esme.submit(b"4")).command_status == 0
    assert [m.text for m in sim.inbox("359888123456")] == ["1", "2", "4"]


async def test_garbage_of_an_unknown_command_leaves_the_link_up(sim: Simulator) -> None:
    sim.add_fault("garbage")
    async with bound_esme(sim.smpp_port) as esme:
        first = await esme.submit(b"a")
        second = await esme.submit(b"b")
    assert (first.command_status, second.command_status) == (0, 0)


async def test_garbage_of_a_broken_frame_ends_the_link(sim: Simulator) -> None:
    sim.add_fault("garbage", {"kind": "broken_frame"})
    async with bound_esme(sim.smpp_port) as esme:
        with pytest.raises(ConnectionLost):
            await esme.submit(b"a")


async def test_limited_rate_throttles_beyond_its_rate() -> None:
    now = [100.0]
    sim = Simulator(config_from_mapping(document()), monotonic=lambda: now[0])
    await sim.start("127.0.0.1", 0)
    try:
        sim.add_fault("limited_rate", {"per_second": 2})
        async with bound_esme(sim.smpp_port) as esme:
            statuses = [(await esme.submit(b"m")).command_status for _ in range(4)]
            now[0] += 1.0
            statuses.append((await esme.submit(b"m")).command_status)
    finally:
        await sim.stop()
    assert statuses == [0, 0, S.ESME_RTHROTTLED, S.ESME_RTHROTTLED, 0]


async def test_bind_is_refused_on_wrong_operator_fault_only(sim: Simulator) -> None:
    sim.add_fault("refuse_bind", {"status": S.ESME_RINVSYSID}, operator="sim-ro")
    async with bound_esme(sim.smpp_port):
        pass
    esme = TestEsme()
    await esme.connect(sim.smpp_port)
    try:
        response = await esme.bind(BindTransceiver, "ro-gw", "ro-pw")
        assert response.command_status == S.ESME_RINVSYSID
    finally:
        await esme.close()
