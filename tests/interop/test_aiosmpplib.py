"""aiosmpplib (an asyncio ESME library we did not write) against the simulator over loopback:
bind, submit GSM-7 and UCS-2 (single, message_payload, UDH parts), receive the receipts and
an MO.

aiosmpplib 0.7.4 cannot send SAR parts (``auto_message_payload=False`` without UDHI fails
with UnboundLocalError in ``ESME._dequeue_messages``), so SAR is covered by our own tests."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiosmpplib import (
    ESME,
    NPI,
    TON,
    AbstractHook,
    DeliverSm,
    PhoneNumber,
    SmppMessage,
    SubmitSm,
    SubmitSmResp,
)
from aiosmpplib.broker import SimpleBroker
from tests.integration.simulator.sim_env import HANDSET

from smsgate.simulator import Simulator

LONG_GSM = "A long message in the GSM alphabet, sent in parts. " * 5  # 255 characters
LONG_UCS2 = "Дълго съобщение на кирилица, на части. " * 3  # 117 UCS-2 units
# (text, how aiosmpplib sends it)
MESSAGES: list[tuple[str, dict[str, Any]]] = [
    ("Hello from aiosmpplib", {}),
    ("Здравей от aiosmpplib", {}),
    (LONG_GSM, {}),  # auto_message_payload: one submit_sm with message_payload
    (LONG_UCS2, {"auto_message_payload": False, "esm_class": 0x40}),  # UDH parts
    (LONG_GSM, {"auto_message_payload": False, "esm_class": 0x40}),
]
MO_TEXT = "KOD " * 50  # 200 characters: two UDH parts


class Recorder(AbstractHook):
    def __init__(self) -> None:
        self.receipts: list[DeliverSm] = []
        self.mos: list[DeliverSm] = []
        self.responses: list[SubmitSmResp] = []
        self.errors: list[Exception] = []
        self.changed = asyncio.Event()

    async def sending(self, smpp_message: SmppMessage, pdu: bytes, client_id: str) -> None:
        return None

    async def received(self, smpp_message: SmppMessage | None, pdu: bytes, client_id: str) -> None:
        if isinstance(smpp_message, DeliverSm):
            (self.receipts if smpp_message.is_receipt() else self.mos).append(smpp_message)
        elif isinstance(smpp_message, SubmitSmResp):
            self.responses.append(smpp_message)
        self.changed.set()

    async def send_error(self, smpp_message: SmppMessage, error: Exception, client_id: str) -> None:
        self.errors.append(error)
        self.changed.set()

    async def until(self, condition: Any) -> None:
        async with asyncio.timeout(10):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


async def test_aiosmpplib_submits_and_receives(sim: Simulator) -> None:
    recorder = Recorder()
    broker = SimpleBroker()
    esme = ESME(
        smsc_host="127.0.0.1",
        smsc_port=sim.smpp_port,
        system_id="smsgate",
        password="secret",
        hook=recorder,
        broker=broker,
        log_level=logging.WARNING,
        socket_timeout=5.0,
    )
    running = asyncio.create_task(esme.start())
    writer = None
    try:
        async with asyncio.timeout(10):
            await sim.wait_for_receiver("sim-bg")
        # aiosmpplib's stop() half-closes its socket and drops the writer without close()
        writer = esme._writer
        for index, (text, options) in enumerate(MESSAGES):
            await broker.enqueue(
                SubmitSm(
                    short_message=text,
                    source=PhoneNumber("SHOP", TON.ALPHANUMERIC, NPI.UNKNOWN),
                    destination=PhoneNumber(HANDSET, TON.INTERNATIONAL, NPI.ISDN),
                    log_id=f"m{index}",
                    **options,
                )
            )
        # aiosmpplib reports one receipt per message, once every part's receipt is in
        await recorder.until(lambda: len(recorder.receipts) >= len(MESSAGES))
        result = await sim.inject_mo(HANDSET, "1851", MO_TEXT)
        await recorder.until(lambda: len(recorder.mos) >= 1)
    finally:
        try:
            async with asyncio.timeout(10):
                await esme.stop()
                await running
        finally:
            running.cancel()
            if writer is not None:
                writer.close()

    assert recorder.errors == []
    inbox = sim.inbox(HANDSET)
    assert [m.text for m in inbox] == [text for text, _ in MESSAGES]
    assert [m.parts for m in inbox] == [1, 1, 1, 2, 2]
    assert {r.log_id for r in recorder.receipts} == {f"m{i}" for i in range(len(MESSAGES))}
    assert all("stat:DELIVRD" in r.short_message for r in recorder.receipts)

    assert result.statuses == [0, 0]
    # aiosmpplib joins the two UDH parts and reports the whole MO once
    [mo] = recorder.mos
    assert (mo.short_message, mo.source.number) == (MO_TEXT, HANDSET)
