"""Our operator link against an SMSC written by others: the npm ``smpp`` package.

The peer decodes what we send with its own GSM 03.38 and UCS-2 code, and accepts our
receipts and MOs with its own encoder, so a misreading of the specification on our side
shows up here even when our own simulator agrees with us.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from tests.integration.links.link_env import (
    PASSWORD,
    SYSTEM_ID,
    RunningLink,
    eventually,
    mt_status,
    parts_of,
    provision,
    send,
    settings_for,
    start_link,
)
from tests.interop.npm_smsc.npm_peer import NpmSmsc

from smsgate.domain.concat import ESM_UDHI, build_udh, concat_infos
from smsgate.domain.text import Concat, segment
from smsgate.runtime import Runtime
from smsgate.smpp import EsmClass, MessageState
from smsgate.store.models import MoMessage

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])

GSM_TEXT = "Hello @£$¥ {curly} [square] ~tilde~ €uro"
UCS2_TEXT = "Привет, мир! 你好"
LONG_GSM = "The quick brown fox jumps over the lazy dog, twice as fast. " * 5
LONG_UCS2 = "Дълго съобщение на кирилица, което не се събира в едно. " * 3


@pytest.fixture
async def peer() -> AsyncIterator[NpmSmsc]:
    smsc = await NpmSmsc.start(SYSTEM_ID, PASSWORD)
    try:
        yield smsc
    finally:
        await smsc.stop()


async def linked(runtime: Runtime, peer: NpmSmsc, **settings: object) -> RunningLink:
    await provision(runtime.sessions, peer.port, **settings)
    return await start_link(runtime, settings_for(peer.port, **settings))


def joined(submits: list[dict[str, object]]) -> str:
    return "".join(str(event["message"]) for event in submits)


async def test_bind_and_single_messages_in_gsm7_and_ucs2(runtime: Runtime, peer: NpmSmsc) -> None:
    link = await linked(runtime, peer)
    try:
        (bind,) = await peer.wait_for("bind")
        assert (bind["command"], bind["system_id"]) == ("bind_transceiver", SYSTEM_ID)
        gsm = await send(runtime, GSM_TEXT, sender="1851")
        ucs2 = await send(runtime, UCS2_TEXT, sender="SHOP")
        first, second = await peer.wait_for("submit_sm", 2)
        assert (first["data_coding"], first["message"]) == (0, GSM_TEXT)
        assert (first["source_addr"], first["destination_addr"]) == ("1851", "359888123456")
        assert (first["dest_addr_ton"], first["dest_addr_npi"]) == (1, 1)
        assert first["registered_delivery"] == 1
        assert (second["data_coding"], second["message"]) == (8, UCS2_TEXT)
        assert (second["source_addr"], second["source_addr_ton"]) == ("SHOP", 5)
        await eventually(lambda: mt_status(runtime, gsm, "submitted"))
        await eventually(lambda: mt_status(runtime, ucs2, "submitted"))
    finally:
        await link.stop()


async def test_multipart_with_udh(runtime: Runtime, peer: NpmSmsc) -> None:
    link = await linked(runtime, peer)
    try:
        await send(runtime, LONG_GSM)
        parts = await peer.wait_for("submit_sm", 2)
        assert joined(parts) == LONG_GSM
        # The package lists the information elements: IEI 0x00, length 3, ref, total, seq.
        elements = [bytes.fromhex(str(part["udh"][0])) for part in parts]  # type: ignore[index]
        assert [e[:2] for e in elements] == [b"\x00\x03"] * 2
        assert [(e[3], e[4]) for e in elements] == [(2, 1), (2, 2)]
        assert elements[0][2] == elements[1][2]
        assert all(part["esm_class"] == ESM_UDHI for part in parts)
    finally:
        await link.stop()


async def test_multipart_with_sar(runtime: Runtime, peer: NpmSmsc) -> None:
    link = await linked(runtime, peer, concat="sar")
    try:
        await send(runtime, LONG_UCS2)
        parts = await peer.wait_for("submit_sm", 3)
        assert joined(parts) == LONG_UCS2
        assert [p["sar_segment_seqnum"] for p in parts] == [1, 2, 3]
        assert {p["sar_total_segments"] for p in parts} == {3}
        assert len({p["sar_msg_ref_num"] for p in parts}) == 1
        assert all(p["udh"] == [] for p in parts)
    finally:
        await link.stop()


async def test_receipts_as_text_and_as_tlvs_deliver_every_part(
    runtime: Runtime, peer: NpmSmsc
) -> None:
    link = await linked(runtime, peer)
    try:
        mt_id = await send(runtime, LONG_GSM)
        first, second = await peer.wait_for("submit_sm", 2)
        await eventually(lambda: mt_status(runtime, mt_id, "submitted"))
        text = (
            f"id:{first['message_id']} sub:001 dlvrd:001 submit date:2611221200"
            " done date:2611221201 stat:DELIVRD err:000 text:The quick brown"
        )
        status = await peer.deliver(
            "dlr-1",
            source_addr="359888123456",
            destination_addr="1851",
            esm_class=EsmClass.TYPE_DELIVERY_RECEIPT,
            short_message_hex=text.encode().hex(),
        )
        assert status == 0
        status = await peer.deliver(
            "dlr-2",
            source_addr="359888123456",
            destination_addr="1851",
            esm_class=EsmClass.TYPE_DELIVERY_RECEIPT,
            short_message_hex="",
            receipted_message_id=second["message_id"],
            message_state=MessageState.DELIVERED,
        )
        assert status == 0
        await eventually(lambda: mt_status(runtime, mt_id, "delivered"))
        assert [p.status for p in await parts_of(runtime, mt_id)] == ["delivered"] * 2
    finally:
        await link.stop()


async def test_mos_single_and_concatenated(runtime: Runtime, peer: NpmSmsc) -> None:
    link = await linked(runtime, peer, bind_mode="transmitter_receiver")
    try:
        binds = await peer.wait_for("bind", 2)
        assert {b["command"] for b in binds} == {"bind_transmitter", "bind_receiver"}
        status = await peer.deliver(
            "mo-1",
            source_addr="359888111222",
            destination_addr="1851",
            short_message_hex=b"KOD 1".hex(),
        )
        assert status == 0
        long = segment(LONG_UCS2, concat=Concat.UDH8)
        for info, payload in zip(concat_infos(long.parts, 42), long.payloads, strict=True):
            status = await peer.deliver(
                f"part-{info.seq}",
                source_addr="359888111222",
                destination_addr="1851",
                esm_class=ESM_UDHI,
                data_coding=8,
                short_message_hex=(build_udh(info) + payload).hex(),
            )
            assert status == 0
        async with runtime.sessions() as session:
            texts = [mo.text for mo in (await session.execute(select(MoMessage))).scalars()]
        assert texts == ["KOD 1", LONG_UCS2]
    finally:
        await link.stop()
