"""Traffic over a real loopback socket: binds, windowed submits, receipts, timeouts."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from tests.integration.smpp.smpp_fakes import TinySmsc, eventually

from smsgate.smpp import (
    BindFailed,
    BindState,
    BindTransceiver,
    BindTransmitter,
    CommandStatus,
    ConnectionLost,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    EsmClass,
    IncomingPdu,
    InvalidBindState,
    RegisteredDelivery,
    Response,
    ResponseTimeout,
    SessionConfig,
    SmppSession,
    SubmitSm,
    SubmitSmResp,
    connect,
)


@pytest.fixture
async def smsc() -> AsyncIterator[TinySmsc]:
    server = await TinySmsc().start()
    yield server
    await server.close()


def submit(n: int) -> SubmitSm:
    return SubmitSm(
        source_addr="1851",
        destination_addr=f"35988{n:07d}",
        registered_delivery=RegisteredDelivery.RECEIPT,
        short_message=f"message {n}".encode(),
    )


class Receipts:
    """An ESME-side handler that keeps the delivery receipts it is given."""

    def __init__(self) -> None:
        self.received: list[DeliverSm] = []

    def __call__(self, pdu: IncomingPdu) -> Response | None:
        assert isinstance(pdu, DeliverSm)
        assert pdu.esm_class & EsmClass.TYPE_MASK == EsmClass.TYPE_DELIVERY_RECEIPT
        self.received.append(pdu)
        return DeliverSmResp()


@pytest.mark.parametrize("window", [10, 50])
async def test_bind_submit_a_thousand_and_receive_their_receipts(
    smsc: TinySmsc, window: int
) -> None:
    receipts = Receipts()
    session = await connect(
        "127.0.0.1", smsc.port, handler=receipts, config=SessionConfig(window=window)
    )
    try:
        bound = await session.bind(BindTransceiver(system_id="shop", password="secret"))
        assert bound.system_id == "tiny"
        assert session.state is BindState.BOUND_TRX

        futures: list[asyncio.Future[SubmitSmResp]] = []
        most_outstanding = 0
        for n in range(1000):
            futures.append(await session.start_request(submit(n)))
            most_outstanding = max(most_outstanding, session.outstanding)
        responses = await asyncio.gather(*futures)

        assert most_outstanding == window
        assert all(r.command_status == CommandStatus.ESME_ROK for r in responses)
        message_ids = [r.message_id for r in responses]
        assert len(set(message_ids)) == 1000
        assert [sm.destination_addr for sm in smsc.submitted] == [
            f"35988{n:07d}" for n in range(1000)
        ]
        await eventually(lambda: len(receipts.received) == 1000, what="all receipts")
        assert {r.tlvs.receipted_message_id for r in receipts.received} == set(message_ids)
    finally:
        await session.unbind()
    assert session.close_reason == "unbound"


async def test_bind_with_a_wrong_password_fails(smsc: TinySmsc) -> None:
    session = await connect("127.0.0.1", smsc.port)
    try:
        with pytest.raises(BindFailed) as refused:
            await session.bind(BindTransmitter(system_id="shop", password="wrong"))
        assert refused.value.command_status == CommandStatus.ESME_RINVPASWD
        assert session.state is BindState.OPEN
        # still open: a second attempt may succeed
        await session.bind(BindTransmitter(system_id="shop", password="secret"))
        assert session.state is BindState.BOUND_TX
    finally:
        await session.close()


async def test_a_full_window_makes_the_sender_wait(smsc: TinySmsc) -> None:
    smsc.hold = asyncio.Event()
    session = await connect("127.0.0.1", smsc.port, config=SessionConfig(window=3))
    try:
        await session.bind(BindTransmitter(system_id="shop", password="secret"))
        started = [await session.start_request(submit(n)) for n in range(3)]
        fourth = asyncio.ensure_future(session.start_request(submit(3)))
        await asyncio.sleep(0.05)  # room for a wrong implementation to send the fourth
        assert not fourth.done()
        assert session.outstanding == 3

        smsc.hold.set()
        await asyncio.gather(*started)
        response = await (await fourth)
        assert response.command_status == CommandStatus.ESME_ROK
        assert len(smsc.submitted) == 4
        assert session.outstanding == 0
    finally:
        await session.close()


async def test_no_response_in_time_raises_and_frees_the_window(smsc: TinySmsc) -> None:
    smsc.hold = asyncio.Event()  # never set: submit_sm is never answered
    session = await connect("127.0.0.1", smsc.port, config=SessionConfig(window=1))
    try:
        await session.bind(BindTransmitter(system_id="shop", password="secret"))
        with pytest.raises(ResponseTimeout) as timed_out:
            await session.send_request(submit(1), response_timeout=0.1)
        assert timed_out.value.command_id == SubmitSm.command_id
        assert session.outstanding == 0
        # The link is still usable and the single window slot came back.
        answer = await session.send_request(EnquireLink())
        assert isinstance(answer, EnquireLinkResp)
        smsc.hold.set()  # the late submit_sm_resp arrives and is dropped quietly
        await eventually(lambda: len(smsc.submitted) == 1)
        assert not session.closed
    finally:
        await session.close()


async def test_operations_the_bind_state_forbids_are_refused_locally(smsc: TinySmsc) -> None:
    session = await connect("127.0.0.1", smsc.port)
    try:
        with pytest.raises(InvalidBindState):
            await session.send_request(submit(1))
        await session.bind(BindTransmitter(system_id="shop", password="secret"))
        with pytest.raises(InvalidBindState):
            await session.bind(BindTransmitter(system_id="shop", password="secret"))
    finally:
        await session.close()
    with pytest.raises(ConnectionLost):
        await session.send_request(EnquireLink())


async def test_nodelay_is_set_on_both_ends(smsc: TinySmsc) -> None:
    session = await connect("127.0.0.1", smsc.port)
    try:
        await session.bind(BindTransmitter(system_id="shop", password="secret"))
        await eventually(lambda: len(smsc.sessions) == 1)
        for end in (session, smsc.sessions[0]):
            sock = end._writer.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        await session.close()


async def test_an_async_handler_runs_concurrently(smsc: TinySmsc) -> None:
    """A slow (e.g. committing) deliver_sm handler does not hold up the others."""
    release = asyncio.Event()
    handled: list[str] = []

    async def slow_handler(pdu: IncomingPdu) -> Response | None:
        assert isinstance(pdu, DeliverSm)
        await release.wait()
        handled.append(pdu.tlvs.receipted_message_id or "")
        return DeliverSmResp()

    session = await connect("127.0.0.1", smsc.port, handler=slow_handler)
    try:
        await session.bind(BindTransceiver(system_id="shop", password="secret"))
        for n in range(20):
            await session.send_request(submit(n))
        await asyncio.sleep(0.05)
        assert handled == []
        release.set()
        await eventually(lambda: len(handled) == 20)
    finally:
        await session.unbind()


async def test_receipts_need_a_receiving_bind(smsc: TinySmsc) -> None:
    """deliver_sm to a transmitter-only ESME is refused with ESME_RINVBNDSTS."""
    session: SmppSession = await connect("127.0.0.1", smsc.port, handler=Receipts())
    try:
        await session.bind(BindTransmitter(system_id="shop", password="secret"))
        await session.send_request(submit(1))
        await eventually(lambda: len(smsc.sessions) == 1)
        smsc_side = smsc.sessions[0]
        with pytest.raises(InvalidBindState):
            await smsc_side.send_request(DeliverSm(source_addr="1", destination_addr="2"))
    finally:
        await session.close()
