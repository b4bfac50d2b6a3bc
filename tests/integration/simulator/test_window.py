"""The simulated SMSC's window for what it delivers: with 1, the next deliver_sm only after the
ESME answered the last one, as some SMSCs send receipts."""

from __future__ import annotations

import asyncio

from tests.integration.simulator.sim_env import HANDSET, PASSWORD, SYSTEM_ID, WAIT, make_simulator

from smsgate.simulator import SimulatorOptions
from smsgate.smpp.pdu import BindTransceiver, DeliverSm, DeliverSmResp, SubmitSm
from smsgate.smpp.session import IncomingPdu, SessionConfig
from smsgate.smpp.tcp import connect


async def test_a_window_of_one_waits_for_each_answer() -> None:
    sim = make_simulator(SimulatorOptions(window=1))
    await sim.start("127.0.0.1", 0)
    delivered: asyncio.Queue[DeliverSm] = asyncio.Queue()
    release = asyncio.Queue[None]()

    async def handle(pdu: IncomingPdu) -> DeliverSmResp | None:
        if not isinstance(pdu, DeliverSm):
            return None
        delivered.put_nowait(pdu)
        await release.get()  # held until the test lets this one be answered
        return DeliverSmResp()

    config = SessionConfig(window=10, enquire_link_interval=None, inactivity_timeout=None)
    session = await connect("127.0.0.1", sim.smpp_port, handler=handle, config=config)
    try:
        async with asyncio.timeout(WAIT):
            await session.send_request(BindTransceiver(system_id=SYSTEM_ID, password=PASSWORD))
            for n in range(3):
                submit = SubmitSm(
                    destination_addr=HANDSET, short_message=b"n%d" % n, registered_delivery=1
                )
                await session.send_request(submit)
            for answered in range(3):
                await delivered.get()
                # While one receipt is unanswered the SMSC sends no other.
                await asyncio.sleep(0.1)
                assert delivered.empty()
                assert sim.stats()["dlrs_sent"] == answered + 1
                release.put_nowait(None)
            while sim.stats()["dlrs_acknowledged"] < 3:
                await asyncio.sleep(0.01)
        assert sim.stats()["dlrs_failed"] == 0
        # Each answer took the 0.1 s the test held it, as the simulator timed it.
        assert all(0.1 <= latency < WAIT for latency in sim.smsc.dispatcher.latencies)
        assert len(sim.smsc.dispatcher.latencies) == 3
    finally:
        await session.close()
        await sim.stop()
