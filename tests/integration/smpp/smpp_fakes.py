"""A tiny SMSC built from SmppSession, and helpers for SMPP tests over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from smsgate.smpp import (
    BindReceiver,
    BindReceiverResp,
    BindRequest,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitterResp,
    CommandStatus,
    DeliverSm,
    EsmClass,
    Handler,
    IncomingPdu,
    MessageState,
    PduError,
    Response,
    SessionConfig,
    SessionError,
    SmppServer,
    SmppSession,
    SubmitSm,
    SubmitSmResp,
    Tlvs,
    serve,
)


async def eventually(
    predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition"
) -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout`` seconds of real I/O."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)
    assert predicate(), what


class TinySmsc:
    """Accepts binds with one password, answers submit_sm, and sends a receipt for each."""

    def __init__(self, *, password: str = "secret", receipts: bool = True) -> None:
        self.password = password
        self.receipts = receipts
        self.sessions: list[SmppSession] = []
        self.submitted: list[SubmitSm] = []
        self.hold: asyncio.Event | None = None  # when set up, submit_sm waits for it
        self.on_submit: Callable[[SmppSession, SubmitSm], Awaitable[None]] | None = None
        self.server: SmppServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    async def start(self, config: SessionConfig | None = None) -> TinySmsc:
        self.server = await serve(self.handler_for, "127.0.0.1", 0, config=config)
        return self

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def handler_for(self, session: SmppSession) -> Handler:
        self.sessions.append(session)

        def handle(pdu: IncomingPdu) -> Response | Awaitable[Response | None] | None:
            if isinstance(pdu, BindRequest):
                if pdu.password != self.password:
                    raise PduError(CommandStatus.ESME_RINVPASWD)
                if isinstance(pdu, BindTransceiver):
                    return BindTransceiverResp(system_id="tiny")
                if isinstance(pdu, BindReceiver):
                    return BindReceiverResp(system_id="tiny")
                return BindTransmitterResp(system_id="tiny")
            if isinstance(pdu, SubmitSm):
                if self.hold is not None or self.on_submit is not None:
                    return self._slow_submit(session, pdu)
                return self._accept(session, pdu)
            return None

        return handle

    async def _slow_submit(self, session: SmppSession, pdu: SubmitSm) -> SubmitSmResp:
        if self.on_submit is not None:
            await self.on_submit(session, pdu)
        if self.hold is not None:
            await self.hold.wait()
        return self._accept(session, pdu)

    def _accept(self, session: SmppSession, pdu: SubmitSm) -> SubmitSmResp:
        self.submitted.append(pdu)
        message_id = f"M{len(self.submitted)}"
        if self.receipts:
            self.spawn(self._send_receipt(session, pdu, message_id))
        return SubmitSmResp(message_id=message_id)

    async def _send_receipt(self, session: SmppSession, sm: SubmitSm, message_id: str) -> None:
        receipt = DeliverSm(
            source_addr=sm.destination_addr,
            destination_addr=sm.source_addr,
            esm_class=EsmClass.TYPE_DELIVERY_RECEIPT,
            short_message=f"id:{message_id} stat:DELIVRD err:000".encode(),
            tlvs=Tlvs(receipted_message_id=message_id, message_state=MessageState.DELIVERED),
        )
        with contextlib.suppress(SessionError):  # the test may close the link first
            await session.send_request(receipt)


class RawPeer:
    """A plain TCP peer that writes exact bytes and reads whole frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> RawPeer:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_frame(self, timeout: float = 5.0) -> bytes:
        async with asyncio.timeout(timeout):
            head = await self.reader.readexactly(4)
            (length,) = struct.unpack(">I", head)
            return head + await self.reader.readexactly(length - 4)

    async def at_eof(self, timeout: float = 5.0) -> bool:
        """Discard what arrives until the other end closes; False if it does not in time."""
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(4096):
                    pass
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


def raw_frame(command_id: int, body: bytes = b"", *, sequence: int = 1, status: int = 0) -> bytes:
    return struct.pack(">IIII", 16 + len(body), command_id, status, sequence) + body
