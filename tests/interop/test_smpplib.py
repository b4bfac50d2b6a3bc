"""smpplib (a synchronous ESME library we did not write) against the simulator over loopback:
bind, submit GSM-7 and UCS-2, single and multipart, receive receipts and an MO."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import smpplib.client
import smpplib.consts
import smpplib.gsm
from tests.integration.simulator.sim_env import HANDSET

from smsgate.simulator import Simulator

TEXTS = [
    "Hello from smpplib",
    "Здравей от smpplib",
    "GSM-7 long message. " * 12,  # 240 septets: two parts
    "Дълго съобщение на кирилица. " * 4,  # 116 UCS-2 units: two parts
]
MO_TEXT = "STOP " * 40  # 200 characters: two parts


@dataclass
class Session:
    submit_ids: list[bytes] = field(default_factory=list)
    receipts: list[Any] = field(default_factory=list)
    mos: list[Any] = field(default_factory=list)
    parts_sent: int = 0
    bound: threading.Event = field(default_factory=threading.Event)


def run_smpplib(port: int, session: Session, deadline: float) -> None:
    client = smpplib.client.Client("127.0.0.1", port, timeout=0.2, allow_unknown_opt_params=True)

    def received(pdu: Any) -> None:
        if pdu.esm_class & 0x04:  # SMPP 3.4 §5.2.12: a delivery receipt
            session.receipts.append(pdu)
        else:
            session.mos.append(pdu)

    client.set_message_received_handler(received)
    client.set_message_sent_handler(lambda pdu: session.submit_ids.append(pdu.message_id))
    client.connect()
    try:
        client.bind_transceiver(system_id="smsgate", password="secret")
        session.bound.set()
        for text in TEXTS:
            parts, encoding, esm_class = smpplib.gsm.make_parts(text)
            for part in parts:
                client.send_message(
                    source_addr_ton=smpplib.consts.SMPP_TON_ALNUM,
                    source_addr="SHOP",
                    dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
                    destination_addr=HANDSET,
                    short_message=part,
                    data_coding=encoding,
                    esm_class=esm_class,
                    registered_delivery=1,
                )
                session.parts_sent += 1
        while time.monotonic() < deadline:
            if len(session.receipts) >= session.parts_sent and len(session.mos) >= 2:
                break
            try:
                client.read_once()
            except TimeoutError:
                continue
        client.unbind()
    finally:
        client.disconnect()


async def test_smpplib_submits_and_receives(sim: Simulator) -> None:
    session = Session()
    deadline = time.monotonic() + 15
    worker = asyncio.create_task(asyncio.to_thread(run_smpplib, sim.smpp_port, session, deadline))
    async with asyncio.timeout(10):
        await sim.wait_for_receiver("sim-bg")
        result = await sim.inject_mo(HANDSET, "1851", MO_TEXT)
    async with asyncio.timeout(20):
        await worker

    assert result.statuses == [0, 0]
    assert [m.text for m in sim.inbox(HANDSET)] == TEXTS
    assert [m.parts for m in sim.inbox(HANDSET)] == [1, 1, 2, 2]

    ids = {pdu.receipted_message_id.decode() for pdu in session.receipts}
    assert ids == {message_id.decode() for message_id in session.submit_ids}
    assert len(session.submit_ids) == session.parts_sent == 6
    assert all(pdu.message_state == 2 for pdu in session.receipts)
    assert all(b"stat:DELIVRD" in pdu.short_message for pdu in session.receipts)

    joined = b"".join(pdu.short_message[6:] for pdu in session.mos)  # after the 6-octet UDH
    assert joined.decode("ascii") == MO_TEXT
    assert {pdu.esm_class for pdu in session.mos} == {smpplib.consts.SMPP_GSMFEAT_UDHI}
