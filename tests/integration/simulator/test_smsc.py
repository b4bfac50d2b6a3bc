"""The simulated SMSC over real sockets: binds, submissions, the inbox, receipts."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from tests.integration.simulator.sim_env import (
    HANDSET,
    PASSWORD,
    SYSTEM_ID,
    BindReceiver,
    BindTransmitter,
    TestEsme,
    bound_esme,
    make_simulator,
)

from smsgate.domain.concat import build_udh, concat_infos
from smsgate.domain.receipts import (
    canonical_receipt_id,
    canonical_submit_id,
    parse_receipt_text,
)
from smsgate.domain.text import Concat, segment
from smsgate.simulator import DlrSettings, Simulator
from smsgate.smpp.codec import FrameReader, decode, encode
from smsgate.smpp.constants import CommandId, CommandStatus, MessageState
from smsgate.smpp.pdu import (
    BindTransceiver,
    CancelSm,
    DataSm,
    DistributionList,
    QuerySm,
    ReplaceSm,
    SmeAddress,
    SubmitMulti,
    SubmitSm,
    Tlvs,
)

S = CommandStatus


@pytest.mark.parametrize("kind", [BindTransmitter, BindReceiver, BindTransceiver])
async def test_each_bind_kind_is_accepted(sim: Simulator, kind: type) -> None:
    async with bound_esme(sim.smpp_port, kind):
        assert sim.stats()["binds"] == 1


@pytest.mark.parametrize(
    ("system_id", "password", "status"),
    [
        (SYSTEM_ID, "wrong", S.ESME_RINVPASWD),
        ("nobody", PASSWORD, S.ESME_RINVSYSID),
    ],
)
async def test_a_bind_with_wrong_credentials_is_refused(
    sim: Simulator, system_id: str, password: str, status: int
) -> None:
    esme = TestEsme()
    await esme.connect(sim.smpp_port)
    try:
        response = await esme.bind(BindTransceiver, system_id, password)
        assert response.command_status == status
        assert sim.stats()["bind_failures"] == 1
    finally:
        await esme.close()


async def test_a_second_operator_binds_with_its_own_credentials(sim: Simulator) -> None:
    async with bound_esme(sim.smpp_port, system_id="ro-gw", password="ro-pw"):
        sessions = sim.stats()["sessions"]
        assert [s["operator"] for s in sessions] == ["sim-ro"]


async def test_a_submit_lands_in_the_inbox_and_gets_a_receipt(sim: Simulator) -> None:
    async with bound_esme(sim.smpp_port) as esme:
        response = await esme.submit(b"Hello world, this is a test", source_addr="SHOP")
        assert response.command_status == 0
        receipt = await esme.next_delivery()

    assert receipt.esm_class & 0x04  # SMPP 3.4 §5.2.12: a delivery receipt
    assert receipt.source_addr == HANDSET
    assert receipt.destination_addr == "SHOP"
    assert receipt.tlvs.receipted_message_id == response.message_id
    assert receipt.tlvs.message_state == MessageState.DELIVERED
    parsed = parse_receipt_text(receipt.short_message.decode("ascii"))
    assert parsed is not None
    assert (parsed.id, parsed.sub, parsed.dlvrd, parsed.stat, parsed.err) == (
        response.message_id,
        "001",
        "001",
        "DELIVRD",
        "000",
    )
    assert receipt.short_message.decode().endswith(" text:Hello world, this is")
    [message] = sim.inbox(HANDSET)
    assert (message.text, message.sender, message.operator) == (
        "Hello world, this is a test",
        "SHOP",
        "sim-bg",
    )
    assert message.message_ids == (response.message_id,)


async def test_no_receipt_unless_asked(sim: Simulator) -> None:
    async with bound_esme(sim.smpp_port) as esme:
        await esme.submit(b"quiet", registered_delivery=0)
        await esme.submit(b"only failures", registered_delivery=2)
        await esme.submit(b"marker", registered_delivery=1)
        receipt = await esme.next_delivery()
        assert receipt.short_message.decode().endswith("text:marker")
        assert esme.delivered.empty()


async def test_a_failure_outcome_is_reported_when_asked_on_failure(sim: Simulator) -> None:
    sim.set_dlr(DlrSettings(outcome="UNDELIV", error_code=27))
    async with bound_esme(sim.smpp_port) as esme:
        await esme.submit(b"lost", registered_delivery=2)
        receipt = await esme.next_delivery()
    text = receipt.short_message.decode()
    assert "stat:UNDELIV err:027" in text
    assert "dlvrd:000" in text
    assert receipt.tlvs.message_state == MessageState.UNDELIVERABLE
    assert receipt.tlvs.network_error_code == bytes([3, 0, 27])


@pytest.mark.parametrize(("dlr_id_format", "base"), [("dec", 16), ("hex", 10), (None, 10)])
async def test_message_ids_follow_the_operators_dlr_id_format(
    dlr_id_format: str | None, base: int
) -> None:
    sim = make_simulator(dlr_id_format=dlr_id_format)
    await sim.start("127.0.0.1", 0)
    try:
        async with bound_esme(sim.smpp_port) as esme:
            response = await esme.submit(b"ids")
            receipt = await esme.next_delivery()
    finally:
        await sim.stop()
    receipt_id = receipt.tlvs.receipted_message_id
    assert receipt_id is not None
    number = int(response.message_id, base)
    other = 10 if base == 16 else 16
    assert int(receipt_id, other if dlr_id_format else base) == number
    if dlr_id_format is not None:
        assert response.message_id != receipt_id
    # the gateway's matching (domain/receipts.py) pairs them up
    fmt = dlr_id_format  # type: ignore[assignment]
    assert canonical_receipt_id(receipt_id, fmt) == canonical_submit_id(response.message_id, fmt)


async def test_a_receipt_waits_for_the_delay() -> None:
    sim = make_simulator()
    sim.set_dlr(DlrSettings(delay_ms=300))
    await sim.start("127.0.0.1", 0)
    try:
        async with bound_esme(sim.smpp_port) as esme:
            loop = asyncio.get_running_loop()
            sent = loop.time()
            await esme.submit(b"later")
            with pytest.raises(TimeoutError):
                await esme.next_delivery(wait=0.1)
            await esme.next_delivery()
            assert loop.time() - sent >= 0.29
    finally:
        await sim.stop()


def _read_frames(sock: socket.socket, count: int) -> list[bytes]:
    reader = FrameReader()
    frames: list[bytes] = []
    while len(frames) < count:
        data = sock.recv(65536)
        assert data, "connection closed early"
        frames.extend(reader.feed(data))
    return frames


async def test_a_receipt_can_come_before_its_submit_sm_resp() -> None:
    """Real SMSCs do this (DESIGN.md 2.2): the receipt is on the wire first."""
    sim = make_simulator()
    sim.set_dlr(DlrSettings(before_resp=True))
    await sim.start("127.0.0.1", 0)

    def exchange() -> list[int]:
        with socket.create_connection(("127.0.0.1", sim.smpp_port), timeout=5) as sock:
            bind = BindTransceiver(system_id=SYSTEM_ID, password=PASSWORD, sequence_number=1)
            sock.sendall(encode(bind))
            _read_frames(sock, 1)
            submit = SubmitSm(
                destination_addr=HANDSET,
                short_message=b"fast",
                registered_delivery=1,
                sequence_number=2,
            )
            sock.sendall(encode(submit))
            frames = _read_frames(sock, 2)
            return [struct.unpack(">I", frame[4:8])[0] for frame in frames]

    try:
        order = await asyncio.to_thread(exchange)
    finally:
        await sim.stop()
    assert order == [CommandId.DELIVER_SM, CommandId.SUBMIT_SM_RESP]


async def test_a_receipt_waits_for_a_receiver_to_bind(sim: Simulator) -> None:
    async with bound_esme(sim.smpp_port, BindTransmitter) as transmitter:
        response = await transmitter.submit(b"stored")
        assert transmitter.delivered.empty()
    async with bound_esme(sim.smpp_port, BindReceiver) as receiver:
        receipt = await receiver.next_delivery()
        assert receipt.tlvs.receipted_message_id == response.message_id


def _parts(text: str, concat: Concat) -> list[bytes]:
    return [s.payload for s in segment(text, concat=concat).segments]


LONG = "The quick brown fox jumps over the lazy dog. " * 8  # 360 GSM-7 characters


@pytest.mark.parametrize("ref_bits", [8, 16])
async def test_a_long_message_with_udh_is_one_inbox_message(sim: Simulator, ref_bits: int) -> None:
    concat = Concat.UDH8 if ref_bits == 8 else Concat.UDH16
    payloads = _parts(LONG, concat)
    infos = concat_infos(len(payloads), 0x1F2 if ref_bits == 16 else 0x42, ref_bits=ref_bits)
    async with bound_esme(sim.smpp_port) as esme:
        ids = []
        for info, payload in zip(infos, payloads, strict=True):
            response = await esme.submit(build_udh(info) + payload, esm_class=0x40)
            ids.append(response.message_id)
        for _ in ids:
            await esme.next_delivery()
    [message] = sim.inbox(HANDSET)
    assert message.text == LONG
    assert message.parts == len(payloads) == 3
    assert message.message_ids == tuple(ids)


async def test_a_long_ucs2_message_with_sar_tlvs_is_one_inbox_message(sim: Simulator) -> None:
    text = "Здравей! Това е дълго съобщение на кирилица. " * 3
    payloads = _parts(text, Concat.SAR)
    async with bound_esme(sim.smpp_port) as esme:
        for seq, payload in enumerate(payloads, start=1):
            tlvs = Tlvs(
                sar_msg_ref_num=777, sar_total_segments=len(payloads), sar_segment_seqnum=seq
            )
            await esme.submit(payload, data_coding=8, tlvs=tlvs, registered_delivery=0)
    [message] = sim.inbox(HANDSET)
    assert (message.text, message.parts, message.data_coding) == (text, len(payloads), 8)


async def test_message_payload_carries_a_long_message_whole(sim: Simulator) -> None:
    payload = "".join(s.payload.decode("latin-1") for s in segment(LONG).segments)
    async with bound_esme(sim.smpp_port) as esme:
        tlvs = Tlvs(message_payload=payload.encode("latin-1"))
        await esme.submit(b"", tlvs=tlvs, registered_delivery=0)
        response = await esme.request(
            DataSm(destination_addr="359888000222", tlvs=Tlvs(message_payload=b"via data-sm"))
        )
        assert response.command_status == 0 and response.message_id
    assert [m.text for m in sim.inbox(HANDSET)] == [LONG]
    assert [m.text for m in sim.inbox("359888000222")] == ["via data-sm"]


async def test_submit_multi_reaches_every_sme_address(sim: Simulator) -> None:
    async with bound_esme(sim.smpp_port) as esme:
        response = await esme.request(
            SubmitMulti(
                source_addr="SHOP",
                dest_addresses=(
                    SmeAddress(1, 1, "359888000001"),
                    DistributionList("friends"),
                    SmeAddress(1, 1, "359888000002"),
                ),
                short_message=b"to all",
            )
        )
    assert response.command_status == 0
    assert [(u.address, u.error_status_code) for u in response.unsuccess_smes] == [
        ("friends", S.ESME_RINVDLNAME)
    ]
    for number in ("359888000001", "359888000002"):
        assert [m.text for m in sim.inbox(number)] == ["to all"]


async def test_query_cancel_and_replace_a_pending_message() -> None:
    sim = make_simulator()
    sim.set_dlr(DlrSettings(delay_ms=60_000))
    await sim.start("127.0.0.1", 0)
    try:
        async with bound_esme(sim.smpp_port) as esme:
            first = await esme.submit(b"first text")
            second = await esme.submit(b"second text", destination_addr="359888000333")
            query = await esme.request(QuerySm(message_id=first.message_id))
            assert (query.command_status, query.message_state) == (0, MessageState.ENROUTE)

            replaced = await esme.request(
                ReplaceSm(message_id=second.message_id, short_message=b"new text")
            )
            assert replaced.command_status == 0
            assert [m.text for m in sim.inbox("359888000333")] == ["new text"]

            cancelled = await esme.request(
                CancelSm(message_id=first.message_id, destination_addr=HANDSET)
            )
            assert cancelled.command_status == 0
            query = await esme.request(QuerySm(message_id=first.message_id))
            assert query.message_state == MessageState.DELETED
            again = await esme.request(CancelSm(message_id=first.message_id))
            assert again.command_status == S.ESME_RCANCELFAIL

            unknown = await esme.request(QuerySm(message_id="nope"))
            assert unknown.command_status == S.ESME_RQUERYFAIL
    finally:
        await sim.stop()


async def test_a_delivered_message_can_no_longer_be_cancelled(sim: Simulator) -> None:
    async with bound_esme(sim.smpp_port) as esme:
        response = await esme.submit(b"done")
        await esme.next_delivery()
        query = await esme.request(QuerySm(message_id=response.message_id))
        assert query.message_state == MessageState.DELIVERED
        assert query.final_date  # SMPP 3.4 §7.1.1 absolute time
        cancel = await esme.request(CancelSm(message_id=response.message_id))
        assert cancel.command_status == S.ESME_RCANCELFAIL


async def test_an_empty_destination_is_refused(sim: Simulator) -> None:
    async with bound_esme(sim.smpp_port) as esme:
        response = await esme.submit(b"x", destination_addr="")
        assert response.command_status == S.ESME_RINVDSTADR


async def test_receipts_come_in_bulk_at_a_window_of_many(sim: Simulator) -> None:
    esme = TestEsme()
    await esme.connect(sim.smpp_port, window=100)
    try:
        await esme.bind()
        assert esme.session is not None
        futures = [
            await esme.session.start_request(
                SubmitSm(destination_addr=HANDSET, short_message=b"n%d" % i, registered_delivery=1)
            )
            for i in range(500)
        ]
        async with asyncio.timeout(10):
            responses = await asyncio.gather(*futures)
            receipts = [await esme.next_delivery() for _ in range(500)]
            while sim.stats()["dlrs_acknowledged"] < 500:  # our deliver_sm_resp are in flight
                await asyncio.sleep(0.01)
    finally:
        await esme.close()
    assert all(r.command_status == 0 for r in responses)
    assert {r.tlvs.receipted_message_id for r in receipts} == {r.message_id for r in responses}
    assert len(sim.inbox(HANDSET)) == 500
    stats = sim.stats()
    assert (stats["submits"], stats["dlrs_sent"], stats["dlrs_acknowledged"]) == (500, 500, 500)


async def test_a_garbled_pdu_gets_generic_nack_and_the_link_stays(sim: Simulator) -> None:
    def exchange() -> list[tuple[int, int]]:
        with socket.create_connection(("127.0.0.1", sim.smpp_port), timeout=5) as sock:
            bind = BindTransceiver(system_id=SYSTEM_ID, password=PASSWORD, sequence_number=1)
            sock.sendall(encode(bind))
            _read_frames(sock, 1)
            sock.sendall(struct.pack(">IIII", 16, 0x0000_0077, 0, 5))  # unknown command
            sock.sendall(encode(SubmitSm(destination_addr=HANDSET, sequence_number=6)))
            frames = _read_frames(sock, 2)
            return [(decode(f).command_id, decode(f).command_status) for f in frames]

    answers = await asyncio.to_thread(exchange)
    assert answers == [
        (CommandId.GENERIC_NACK, S.ESME_RINVCMDID),
        (CommandId.SUBMIT_SM_RESP, 0),
    ]
