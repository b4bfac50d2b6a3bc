"""One SMPP 3.4 session over an asyncio stream pair, for the ESME and the SMSC side alike.

What it does for its owner:
- numbers requests, keeps up to ``window`` of them outstanding (``start_request`` waits
  for room: that is the back-pressure), matches responses by sequence number, and fails a
  request with ResponseTimeout or ConnectionLost when its outcome becomes unknown;
- hands incoming requests to an async handler and writes the response it returns (a
  PduError from the handler becomes that status; a malformed frame gets generic_nack);
- answers enquire_link and unbind itself, sends enquire_link when the link goes quiet and
  closes it after ``inactivity_timeout`` of silence;
- tracks the bind state and refuses operations the state does not allow (SMPP 3.4 §2.3);
- coalesces everything written in one event-loop pass into a single socket write.

The pieces with an idea of their own live beside it: the window of outstanding requests
(window.py), the handler tasks (handlers.py), keep-alive (keepalive.py) and write
coalescing (outbox.py). This module ties them to the bind state and the reading loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from typing import Any, TypeVar

from .codec import FrameReader, decode, encode
from .constants import RESPONSE_BIT, CommandId, CommandStatus
from .errors import (
    BindFailed,
    ConnectionLost,
    GenericNackReceived,
    InvalidBindState,
    PduEncodeError,
    PduError,
    UnexpectedResponse,
)
from .handlers import HandlerRunner, Outcome
from .keepalive import Keepalive
from .options import Handler, HandlerResult, IncomingPdu, SessionConfig
from .outbox import Outbox
from .pdu import (
    BindRequest,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Notification,
    Pdu,
    Request,
    Response,
    Unbind,
    UnbindResp,
)
from .states import BindState, Role, allowed_commands, state_after_bind
from .window import Pending, RequestWindow

__all__ = ["Handler", "HandlerResult", "IncomingPdu", "SessionConfig", "SmppSession"]

log = logging.getLogger(__name__)
S = CommandStatus
R = TypeVar("R", bound=Response)

_READ_SIZE = 256 * 1024
_HEADER = struct.Struct(">IIII")


class SmppSession:
    """An SMPP session on an open connection. Call ``start()`` once (connect/serve do)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        role: Role,
        handler: Handler | None = None,
        config: SessionConfig | None = None,
        name: str = "",
    ) -> None:
        self.config = config or SessionConfig()
        self.role = role
        self.handler = handler
        self._reader = reader
        self._writer = writer
        self._loop = asyncio.get_running_loop()
        peer = writer.get_extra_info("peername")
        self.peername: str = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.name = name or f"{role.value}:{self.peername}"
        self._outbox = Outbox(writer, self.config.write_buffer_limit)

        self._state = BindState.OPEN
        self._may_send = allowed_commands(role, BindState.OPEN)
        self._may_receive = allowed_commands(role.peer, BindState.OPEN)
        self._binding = False
        self._unbinding = False
        self.close_reason: str | None = None
        self._closed = asyncio.Event()

        self._window = RequestWindow(self.config.window, self._on_expired)
        self._handlers = HandlerRunner(self.config.handler_concurrency, self._finish, self.name)
        self._keepalive = Keepalive(
            self.config.enquire_link_interval,
            self.config.inactivity_timeout,
            enquire_link=lambda: self._start(EnquireLink(), None, use_window=False),
            spawn=self._handlers.spawn,
            close=self._shutdown,
            closed=lambda: self._state is BindState.CLOSED,
            may_enquire=lambda: not self._unbinding,
        )
        self._tasks: list[asyncio.Task[None]] = []

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._tasks:
            raise RuntimeError("session already started")
        self._tasks.append(self._loop.create_task(self._read_loop(), name=f"{self.name} read"))
        if self._keepalive.needed:
            self._tasks.append(
                self._loop.create_task(self._keepalive.run(), name=f"{self.name} ka")
            )

    @property
    def state(self) -> BindState:
        return self._state

    @property
    def closed(self) -> bool:
        return self._state is BindState.CLOSED

    @property
    def outstanding(self) -> int:
        """Requests sent and not yet answered, timed out or failed."""
        return len(self._window)

    async def wait_closed(self) -> None:
        """Return once the session is closed and its tasks have finished."""
        await self._closed.wait()
        current = asyncio.current_task()
        tasks = [t for t in (*self._tasks, *self._handlers.tasks) if t is not current]
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()

    async def close(self, reason: str = "closed locally") -> None:
        """Close at once: outstanding requests fail with ConnectionLost."""
        self._shutdown(reason)
        await self.wait_closed()

    async def unbind(self, grace: float | None = None) -> None:
        """Let outstanding requests finish, send unbind, wait for unbind_resp, close.

        ``grace`` bounds the whole wait (default ``config.unbind_timeout``); past it the
        session closes anyway and what is still outstanding fails with ConnectionLost.
        """
        if self.closed:
            return
        if self._unbinding:
            await self.wait_closed()
            return
        if self._state is BindState.OPEN:
            await self.close("closed before bind")
            return
        self._unbinding = True
        grace = self.config.unbind_timeout if grace is None else grace
        try:
            async with asyncio.timeout(grace):
                await self._window.idle.wait()
                future = self._start(Unbind(), grace, use_window=False)
                await future
        except (TimeoutError, ConnectionLost, GenericNackReceived, PduError) as exc:
            log.info("%s: unbind not confirmed: %s", self.name, exc)
        await self.close("unbound")

    async def __aenter__(self) -> SmppSession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.unbind()

    # --- sending -----------------------------------------------------------------------------

    async def send_request(self, pdu: Request[R], response_timeout: float | None = None) -> R:
        """Send ``pdu`` and return its response (any command_status: check it).

        Raises ResponseTimeout or ConnectionLost when the outcome is unknown,
        GenericNackReceived when the peer did not accept the request, InvalidBindState
        (before sending anything) when the bind state does not allow the operation.
        """
        future = await self.start_request(pdu, response_timeout)
        return await future

    async def start_request(
        self, pdu: Request[R], response_timeout: float | None = None
    ) -> asyncio.Future[R]:
        """Wait for room in the window, send ``pdu``, return the future of its response.

        One task can keep the window full this way without a task per message.
        """
        self._check_may_send(pdu)
        await self._window.take_slot()
        try:
            self._check_may_send(pdu)
            future = self._start(pdu, response_timeout, use_window=True)
        except BaseException:
            self._window.give_slot()
            raise
        if self._window.full:
            self._outbox.flush()  # nothing more can follow before a response: do not wait a pass
        if self._outbox.over_limit:
            await self._drain()
        return future

    async def bind(self, pdu: BindRequest[R], response_timeout: float | None = None) -> R:
        """Bind (ESME side): return the bind_resp, or raise BindFailed with its status."""
        response = await self.send_request(pdu, response_timeout)
        if response.command_status != S.ESME_ROK:
            raise BindFailed(response.command_status)
        return response

    def send_notification(self, pdu: Notification) -> None:
        """Send outbind or alert_notification (they have no response)."""
        self._check_may_send(pdu)
        self._send(pdu)

    def _check_may_send(self, pdu: Pdu) -> None:
        if self._state is BindState.CLOSED:
            raise ConnectionLost(f"session closed: {self.close_reason}")
        command_id = pdu.command_id
        if self._unbinding and command_id != CommandId.UNBIND:
            raise InvalidBindState(f"{command_id.name} while unbinding")
        if command_id not in self._may_send:
            raise InvalidBindState(f"{command_id.name} not allowed in {self._state.name}")
        if self._binding and isinstance(pdu, BindRequest):
            raise InvalidBindState("a bind is already in progress")

    def _start(
        self, pdu: Request[R], response_timeout: float | None, *, use_window: bool
    ) -> asyncio.Future[R]:
        if self._state is BindState.CLOSED:
            raise ConnectionLost(f"session closed: {self.close_reason}")
        timeout = self.config.response_timeout if response_timeout is None else response_timeout
        future = self._window.add(pdu, timeout, windowed=use_window)
        try:
            data = encode(pdu)
        except PduEncodeError:
            self._window.pop(pdu.sequence_number)
            raise
        if isinstance(pdu, BindRequest):
            self._binding = True
        self._outbox.write(data)
        return future

    def _send(self, pdu: Pdu) -> None:
        try:
            self._outbox.write(encode(pdu))
        except PduEncodeError:
            log.exception("%s: cannot encode %s", self.name, type(pdu).__name__)
            raise

    async def _drain(self) -> None:
        try:
            await self._outbox.drain()
        except (ConnectionError, OSError) as exc:
            self._shutdown(f"write failed: {exc}")

    # --- completing requests -----------------------------------------------------------------

    def _on_expired(self, pending: Pending) -> None:
        if isinstance(pending.request, BindRequest):
            self._binding = False

    def _on_response(self, frame: bytes) -> None:
        _, command_id, status, sequence = _HEADER.unpack_from(frame)
        pending = self._window.pop(sequence)
        if pending is None:
            log.warning(
                "%s: response 0x%08X to unknown sequence %d", self.name, command_id, sequence
            )
            return
        request, future = pending.request, pending.future
        if isinstance(request, BindRequest):
            self._binding = False
        if future.done():  # the caller gave up waiting
            return
        try:
            response = decode(frame)
        except PduError as exc:
            future.set_exception(exc)
            return
        if command_id == CommandId.GENERIC_NACK:
            future.set_exception(GenericNackReceived(status, sequence_number=sequence))
            return
        if command_id != request.command_id | RESPONSE_BIT:
            future.set_exception(
                UnexpectedResponse(f"0x{command_id:08X} answered {request.command_id.name}")
            )
            return
        if status == S.ESME_ROK:
            self._after_success(request)
        future.set_result(response)

    def _after_success(self, request: Request[Any]) -> None:
        if isinstance(request, BindRequest):
            self._set_state(state_after_bind(request.command_id))
        elif isinstance(request, Unbind):
            self._loop.call_soon(self._shutdown, "unbound")

    # --- receiving ---------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        frames_reader = FrameReader(self.config.max_frame_size)
        keepalive = self._keepalive
        outbox = self._outbox
        reason = "connection closed by peer"
        try:
            while self._state is not BindState.CLOSED:
                data = await self._reader.read(_READ_SIZE)
                if not data:
                    break
                keepalive.last_heard = self._loop.time()
                for frame in frames_reader.feed(data):
                    if frame[4] & 0x80:  # the response bit of command_id (SMPP 3.4 §5.1.2)
                        self._on_response(frame)
                    else:
                        await self._on_request(frame)
                if outbox.waiting:
                    outbox.flush()  # the answers to this read, in one write
                if frames_reader.error is not None:
                    error = frames_reader.error
                    log.warning("%s: unreadable stream: %s", self.name, error)
                    self._send(self._nack(error))
                    reason = f"unreadable stream: {error}"
                    break
                if outbox.over_limit:
                    await self._drain()
        except (ConnectionError, OSError) as exc:
            reason = f"connection lost: {exc}"
        except Exception:
            log.exception("%s: session failed", self.name)
            reason = "internal error"
        self._shutdown(reason)

    async def _on_request(self, frame: bytes) -> None:
        try:
            pdu = decode(frame)
        except PduError as error:
            log.info("%s: malformed request: %s", self.name, error)
            self._send(self._nack(error))
            return
        assert isinstance(pdu, Request | Notification)  # no response id reaches here
        refusal = self._admit(pdu)
        if refusal is not None:
            if isinstance(pdu, Request):
                self._send(pdu.error_response(refusal))
            return
        if isinstance(pdu, EnquireLink):
            self._send(EnquireLinkResp(sequence_number=pdu.sequence_number))
        elif isinstance(pdu, Unbind):
            self._send(UnbindResp(sequence_number=pdu.sequence_number))
            self._unbinding = True
            self._loop.call_soon(self._shutdown, "peer unbound")
        else:
            await self._handlers.run(self.handler, pdu)

    def _finish(self, pdu: IncomingPdu, outcome: Outcome) -> None:
        """Answer ``pdu`` with the handler's response, or with a status when it failed."""
        if isinstance(pdu, BindRequest):
            self._binding = False
        if isinstance(pdu, Request):
            if isinstance(outcome, int):
                outcome = pdu.error_response(outcome)
            self._respond(pdu, outcome)

    def _set_state(self, state: BindState) -> None:
        self._state = state
        self._may_send = allowed_commands(self.role, state)
        self._may_receive = allowed_commands(self.role.peer, state)

    def _admit(self, pdu: IncomingPdu) -> int | None:
        """None to accept ``pdu`` in the current state, else the status refusing it."""
        command_id = pdu.command_id
        if isinstance(pdu, BindRequest) and self.role is Role.SMSC:
            if self._state is not BindState.OPEN or self._binding:
                return S.ESME_RALYBND
            self._binding = True
            return None
        if command_id in self._may_receive:
            return None
        return S.ESME_RINVBNDSTS

    @staticmethod
    def _nack(error: PduError) -> GenericNack:
        return GenericNack(
            sequence_number=error.sequence_number or 0, command_status=error.command_status
        )

    def _respond(self, request: Request[Any], response: Response | None) -> None:
        if self._state is BindState.CLOSED:
            return
        if response is None or not isinstance(response, request.response_class | GenericNack):
            log.error(
                "%s: handler answered %s with %r", self.name, request.command_id.name, response
            )
            response = request.error_response(S.ESME_RSYSERR)
        response.sequence_number = request.sequence_number
        try:
            data = encode(response)
        except PduEncodeError:
            log.exception("%s: cannot encode the handler's response", self.name)
            data = encode(request.error_response(S.ESME_RSYSERR))
            response = None
        if (
            response is not None
            and isinstance(request, BindRequest)
            and response.command_status == S.ESME_ROK
        ):
            self._set_state(state_after_bind(request.command_id))
        self._outbox.write(data)

    # --- shutdown ----------------------------------------------------------------------------

    def _shutdown(self, reason: str) -> None:
        if self._state is BindState.CLOSED:
            return
        self._set_state(BindState.CLOSED)
        self.close_reason = reason
        log.info("%s: closed (%s)", self.name, reason)
        self._outbox.close()
        self._window.fail_all(lambda: ConnectionLost(reason))
        # Wake one sender waiting for window room: it finds the session closed, raises
        # ConnectionLost and gives its slot back, which wakes the next one.
        self._window.give_slot()
        # Handlers still running are cancelled (their requests were not answered, so the
        # peer will send them again), even one that is closing its own session.
        current = asyncio.current_task()
        for task in (*self._tasks, *self._handlers.tasks):
            if not task.done() and not (task is current and task in self._tasks):
                task.cancel()
        self._closed.set()
