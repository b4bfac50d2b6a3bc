"""Keep-alive, unbind, broken peers and bad bytes, over real loopback sockets."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator

import pytest
from tests.integration.smpp.smpp_fakes import RawPeer, TinySmsc, eventually, raw_frame

from smsgate.smpp import (
    AlertNotification,
    BindReceiver,
    BindState,
    BindTransceiver,
    BindTransmitter,
    CommandId,
    CommandStatus,
    ConnectionLost,
    DeliverSmResp,
    EnquireLink,
    GenericNackReceived,
    Handler,
    IncomingPdu,
    InvalidBindState,
    Outbind,
    PduError,
    Response,
    Role,
    SessionConfig,
    SmppSession,
    SubmitSm,
    SubmitSmResp,
    UnexpectedResponse,
    connect,
    decode_header,
    encode,
    serve,
)

S = CommandStatus


@pytest.fixture
async def smsc() -> AsyncIterator[TinySmsc]:
    server = await TinySmsc(receipts=False).start()
    yield server
    await server.close()


async def bound_client(port: int, config: SessionConfig | None = None) -> SmppSession:
    session = await connect("127.0.0.1", port, config=config)
    await session.bind(BindTransmitter(system_id="shop", password="secret"))
    return session


class RawSmsc:
    """A listening socket whose connections the test drives byte by byte."""

    def __init__(self) -> None:
        self.peers: asyncio.Queue[RawPeer] = asyncio.Queue()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self.peers.put(RawPeer(reader, writer))

        self.server = await asyncio.start_server(accept, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        while not self.peers.empty():
            await self.peers.get_nowait().close()
        await self.server.wait_closed()


@pytest.fixture
async def raw_smsc() -> AsyncIterator[RawSmsc]:
    server = RawSmsc()
    yield server
    await server.close()


# --- enquire_link and inactivity -------------------------------------------------------------


async def test_enquire_link_is_sent_when_quiet_and_answered(raw_smsc: RawSmsc) -> None:
    port = await raw_smsc.start()
    config = SessionConfig(enquire_link_interval=0.05, inactivity_timeout=None)
    session = await connect("127.0.0.1", port, config=config)
    peer = await raw_smsc.peers.get()
    try:
        for _ in range(3):
            frame = await peer.read_frame()
            _, command_id, _, sequence = decode_header(frame)
            assert command_id == CommandId.ENQUIRE_LINK
            await peer.send(raw_frame(CommandId.ENQUIRE_LINK_RESP, sequence=sequence))
        assert not session.closed
    finally:
        await session.close()
        await peer.close()


async def test_unanswered_enquire_link_closes_the_session(raw_smsc: RawSmsc) -> None:
    port = await raw_smsc.start()
    config = SessionConfig(enquire_link_interval=0.05, response_timeout=0.1)
    session = await connect("127.0.0.1", port, config=config)
    peer = await raw_smsc.peers.get()
    try:
        await eventually(lambda: session.closed, what="session closed")
        assert session.close_reason is not None
        assert "enquire_link" in session.close_reason
        assert await peer.at_eof()
    finally:
        await session.close()
        await peer.close()


async def test_a_silent_peer_is_disconnected_after_the_inactivity_timeout() -> None:
    config = SessionConfig(enquire_link_interval=None, inactivity_timeout=0.1)
    smsc = await TinySmsc().start(config)
    peer = await RawPeer.connect(smsc.port)
    try:
        assert await peer.at_eof()
        await eventually(lambda: bool(smsc.sessions) and smsc.sessions[0].closed)
        assert "nothing heard" in (smsc.sessions[0].close_reason or "")
    finally:
        await peer.close()
        await smsc.close()


async def test_enquire_link_is_answered_automatically(smsc: TinySmsc) -> None:
    peer = await RawPeer.connect(smsc.port)
    try:
        await peer.send(raw_frame(CommandId.ENQUIRE_LINK, sequence=11))
        assert decode_header(await peer.read_frame())[1:] == (CommandId.ENQUIRE_LINK_RESP, 0, 11)
    finally:
        await peer.close()


# --- unbind and closing ----------------------------------------------------------------------


async def test_esme_unbind_closes_both_sides(smsc: TinySmsc) -> None:
    session = await bound_client(smsc.port)
    await session.send_request(SubmitSm(source_addr="1", destination_addr="2"))
    await session.unbind()
    assert session.closed
    assert session.close_reason == "unbound"
    await eventually(lambda: smsc.sessions[0].closed)
    assert smsc.sessions[0].close_reason == "peer unbound"


async def test_smsc_unbind_is_answered_and_closes_the_esme(smsc: TinySmsc) -> None:
    session = await bound_client(smsc.port)
    try:
        await eventually(lambda: smsc.sessions[0].state is BindState.BOUND_TX)
        await smsc.sessions[0].unbind()
        assert smsc.sessions[0].close_reason == "unbound"
        await eventually(lambda: session.closed)
        assert session.close_reason == "peer unbound"
    finally:
        await session.close()


async def test_unbind_waits_for_outstanding_requests(smsc: TinySmsc) -> None:
    smsc.hold = asyncio.Event()
    session = await bound_client(smsc.port)
    pending = [
        await session.start_request(SubmitSm(source_addr="1", destination_addr=str(n)))
        for n in range(5)
    ]
    unbinding = asyncio.ensure_future(session.unbind(grace=5))
    await asyncio.sleep(0.05)
    assert not unbinding.done()
    with pytest.raises(InvalidBindState, match="unbinding"):
        await session.send_request(SubmitSm(source_addr="1", destination_addr="9"))
    smsc.hold.set()
    await unbinding
    assert all(f.result().command_status == S.ESME_ROK for f in pending)
    assert session.close_reason == "unbound"


async def test_peer_closing_mid_window_fails_the_outstanding_requests(smsc: TinySmsc) -> None:
    arrived = asyncio.Event()

    async def close_on_fifth(smsc_side: SmppSession, pdu: SubmitSm) -> None:
        if len(smsc.submitted) == 4:
            arrived.set()
            await smsc_side.close("gone")
        await asyncio.Event().wait()  # never answers

    session = await bound_client(smsc.port, SessionConfig(window=8))
    try:
        for n in range(4):
            await session.send_request(SubmitSm(source_addr="1", destination_addr=str(n)))
        smsc.on_submit = close_on_fifth
        in_flight = [
            await session.start_request(SubmitSm(source_addr="1", destination_addr=str(n)))
            for n in range(8)
        ]
        waiting = asyncio.ensure_future(
            session.start_request(SubmitSm(source_addr="1", destination_addr="x"))
        )
        await arrived.wait()
        for future in in_flight:
            with pytest.raises(ConnectionLost):
                await future
        with pytest.raises(ConnectionLost):
            await waiting
        assert session.closed
        assert session.outstanding == 0
    finally:
        await session.close()


# --- bad bytes and refused requests ----------------------------------------------------------


async def test_garbage_gets_generic_nack_and_the_server_keeps_serving(smsc: TinySmsc) -> None:
    peer = await RawPeer.connect(smsc.port)
    try:
        # A well-framed PDU with an unknown command_id.
        await peer.send(raw_frame(0x00000777, b"junk", sequence=5))
        assert decode_header(await peer.read_frame())[1:] == (
            CommandId.GENERIC_NACK,
            S.ESME_RINVCMDID,
            5,
        )
        # A known command whose body runs short.
        await peer.send(raw_frame(CommandId.BIND_TRANSMITTER, b"shop\0sec", sequence=6))
        assert decode_header(await peer.read_frame())[1:] == (
            CommandId.GENERIC_NACK,
            S.ESME_RINVCMDLEN,
            6,
        )
        # The same connection still works.
        await peer.send(
            encode(BindTransmitter(sequence_number=7, system_id="s", password="secret"))
        )
        assert decode_header(await peer.read_frame())[1:] == (
            CommandId.BIND_TRANSMITTER_RESP,
            S.ESME_ROK,
            7,
        )
        # A length field no frame can have: nack, then the stream is dropped.
        await peer.send(struct.pack(">IIII", 0x7FFFFFFF, 4, 0, 8) + b"\xff" * 32)
        assert decode_header(await peer.read_frame())[1:] == (
            CommandId.GENERIC_NACK,
            S.ESME_RINVCMDLEN,
            8,
        )
        assert await peer.at_eof()
    finally:
        await peer.close()
    # ... and the server goes on accepting binds.
    session = await bound_client(smsc.port)
    await session.unbind()


async def test_requests_before_bind_and_second_binds_are_refused(smsc: TinySmsc) -> None:
    peer = await RawPeer.connect(smsc.port)
    try:
        await peer.send(encode(SubmitSm(sequence_number=1, source_addr="1")))
        assert decode_header(await peer.read_frame())[1:] == (
            CommandId.SUBMIT_SM_RESP,
            S.ESME_RINVBNDSTS,
            1,
        )
        await peer.send(encode(BindReceiver(sequence_number=2, password="secret")))
        assert decode_header(await peer.read_frame())[2] == S.ESME_ROK
        # bound as a receiver: submit_sm is not allowed, a second bind gets RALYBND
        await peer.send(encode(SubmitSm(sequence_number=3, source_addr="1")))
        assert decode_header(await peer.read_frame())[2] == S.ESME_RINVBNDSTS
        await peer.send(encode(BindTransceiver(sequence_number=4, password="secret")))
        assert decode_header(await peer.read_frame())[1:] == (
            CommandId.BIND_TRANSCEIVER_RESP,
            S.ESME_RALYBND,
            4,
        )
    finally:
        await peer.close()


async def test_handler_errors_become_statuses() -> None:
    def handler_for(session: SmppSession) -> Handler:
        def handle(pdu: IncomingPdu) -> Response | None:
            if isinstance(pdu, BindTransmitter):
                return pdu.response_class()
            assert isinstance(pdu, SubmitSm)
            if pdu.destination_addr == "refused":
                raise PduError(S.ESME_RINVDSTADR, "no such subscriber")
            if pdu.destination_addr == "bug":
                raise RuntimeError("handler bug")
            if pdu.destination_addr == "wrong kind":
                return DeliverSmResp()
            if pdu.destination_addr == "unencodable":
                return SubmitSmResp(message_id="x" * 80)
            return SubmitSmResp(message_id="fine")

        return handle

    server = await serve(handler_for, "127.0.0.1", 0)
    session = await bound_client(server.port)
    try:
        for destination, status in [
            ("refused", S.ESME_RINVDSTADR),
            ("bug", S.ESME_RSYSERR),
            ("wrong kind", S.ESME_RSYSERR),
            ("unencodable", S.ESME_RSYSERR),
            ("ok", S.ESME_ROK),
        ]:
            response = await session.send_request(
                SubmitSm(source_addr="1", destination_addr=destination)
            )
            assert response.command_status == status, destination
    finally:
        await session.close()
        await server.close()


async def test_a_generic_nack_fails_the_request(raw_smsc: RawSmsc) -> None:
    port = await raw_smsc.start()
    session = await connect("127.0.0.1", port)
    peer = await raw_smsc.peers.get()
    try:
        asking = asyncio.ensure_future(session.send_request(EnquireLink()))
        _, _, _, sequence = decode_header(await peer.read_frame())
        await peer.send(raw_frame(CommandId.GENERIC_NACK, sequence=sequence, status=3))
        with pytest.raises(GenericNackReceived) as nacked:
            await asking
        assert nacked.value.command_status == S.ESME_RINVCMDID
        assert not session.closed
    finally:
        await session.close()
        await peer.close()


async def test_outbind_then_bind_receiver_then_alert_notification() -> None:
    """SMPP 3.4 §2.2.1: the SMSC connects out and asks the ESME to bind as a receiver."""
    seen: list[IncomingPdu] = []
    esme_sessions: list[SmppSession] = []
    binds: list[asyncio.Task[object]] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        esme = SmppSession(reader, writer, role=Role.ESME)

        def handle(pdu: IncomingPdu) -> Response | None:
            seen.append(pdu)
            if isinstance(pdu, Outbind):
                bind = BindReceiver(system_id=pdu.system_id, password="secret")
                binds.append(asyncio.ensure_future(esme.bind(bind)))
            return None

        esme.handler = handle
        esme_sessions.append(esme)
        esme.start()
        await esme.wait_closed()

    listener = await asyncio.start_server(accept, "127.0.0.1", 0)
    smsc = TinySmsc()
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", listener.sockets[0].getsockname()[1]
    )
    smsc_side = SmppSession(reader, writer, role=Role.SMSC)
    smsc_side.handler = smsc.handler_for(smsc_side)
    smsc_side.start()
    try:
        smsc_side.send_notification(Outbind(system_id="shop", password="secret"))
        await eventually(lambda: smsc_side.state is BindState.BOUND_RX)
        smsc_side.send_notification(AlertNotification(source_addr="359888000001"))
        await eventually(lambda: len(seen) == 2)
        assert isinstance(seen[0], Outbind)
        assert isinstance(seen[1], AlertNotification)
        await asyncio.gather(*binds)
        assert esme_sessions[0].state is BindState.BOUND_RX
    finally:
        await smsc_side.close()
        await eventually(lambda: all(s.closed for s in esme_sessions))
        listener.close()
        await listener.wait_closed()
        await smsc.close()


async def test_bad_responses_fail_only_their_request(raw_smsc: RawSmsc) -> None:
    port = await raw_smsc.start()
    session = await connect("127.0.0.1", port)
    peer = await raw_smsc.peers.get()
    try:
        # A response nobody asked for is ignored.
        await peer.send(raw_frame(CommandId.SUBMIT_SM_RESP, b"X\0", sequence=999))
        # A response with trailing bytes fails its request with the status it deserves.
        asking = asyncio.ensure_future(session.send_request(EnquireLink()))
        _, _, _, sequence = decode_header(await peer.read_frame())
        await peer.send(raw_frame(CommandId.ENQUIRE_LINK_RESP, b"oops", sequence=sequence))
        with pytest.raises(PduError) as malformed:
            await asking
        assert malformed.value.command_status == S.ESME_RINVCMDLEN
        # The wrong kind of response for the sequence number.
        asking = asyncio.ensure_future(session.send_request(EnquireLink()))
        _, _, _, sequence = decode_header(await peer.read_frame())
        await peer.send(raw_frame(CommandId.SUBMIT_SM_RESP, b"X\0", sequence=sequence))
        with pytest.raises(UnexpectedResponse):
            await asking
        # The link survives all of it.
        asking = asyncio.ensure_future(session.send_request(EnquireLink()))
        _, _, _, sequence = decode_header(await peer.read_frame())
        await peer.send(raw_frame(CommandId.ENQUIRE_LINK_RESP, sequence=sequence))
        assert (await asking).sequence_number == sequence
        assert not session.closed
    finally:
        await session.close()
        await peer.close()
