"""One operator link: connect, bind, submit and receive, and reconnect when the line drops.

Bind modes (SMPP 3.4 §2.2): ``transceiver`` is one connection both ways; ``transmitter_receiver``
is two connections, a transmitter for our submit_sm and a receiver for the SMSC's deliver_sm.
When any connection of the pair is lost, both are closed and bound again together.

Reconnection waits grow exponentially from ``reconnect_min_seconds`` to
``reconnect_max_seconds`` with jitter (half to all of the ceiling, so that many gateways cut
off together do not return together, and none returns at once in a tight loop). What was in
flight when a connection dropped has an unknown outcome and is marked so (submitter.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from smsgate.domain.backoff import RetryPolicy
from smsgate.links.mo_direct import direct_store
from smsgate.links.receiver import Receiver
from smsgate.links.settings import LinkSettings
from smsgate.links.state import LinkState
from smsgate.links.submitter import Submitter
from smsgate.links.write_lock import TaskLock, serialised_sessions
from smsgate.runtime import Runtime
from smsgate.smpp import (
    BindFailed,
    BindReceiver,
    BindRequest,
    BindTransceiver,
    BindTransmitter,
    SessionConfig,
    SmppError,
    SmppSession,
    connect,
)

log = logging.getLogger(__name__)

HOUSEKEEPING_SECONDS: Final = 300.0
UNBIND_GRACE_SECONDS: Final = 10.0


@dataclass(frozen=True, slots=True)
class Bound:
    """The sessions of one bind: the same session twice in transceiver mode."""

    transmitter: SmppSession
    receiver: SmppSession

    def all(self) -> list[SmppSession]:
        if self.transmitter is self.receiver:
            return [self.transmitter]
        return [self.transmitter, self.receiver]


class OperatorLink:
    def __init__(
        self,
        settings: LinkSettings,
        runtime: Runtime,
        *,
        rand: Callable[[], float] = random.random,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._runtime = runtime
        self._rand = rand
        self.state = LinkState(
            operator_id=settings.operator_id,
            host=settings.host,
            port=settings.port,
            bind_mode=settings.bind_mode,
            window=settings.window,
            tps_limit=settings.tps,
        )
        # On SQLite the receiver's transactions queue on the link's write lock too, so that
        # a claim of the replies just committed is not starved by them (write_lock.py).
        write_lock = TaskLock()
        self.submitter = Submitter(
            settings,
            runtime.sessions,
            runtime.clock,
            runtime.mt_nudge,
            self.state,
            write_lock,
            monotonic=monotonic,
            rand=rand,
        )
        self.receiver = Receiver(
            settings,
            serialised_sessions(runtime.sessions, write_lock),
            runtime.clock,
            runtime.mo_handlers,
            self.state,
            write_lock,
            # Receipts and MOs queue work for the worker (callbacks); MTs only when a handler
            # of its own queued some that the batch did not claim with its replies.
            on_committed=runtime.wake_workers,
            on_mts_queued=runtime.wake_links,
            on_replies=self.submitter.take,
            on_unmatched=self.submitter.writer.receipt_unmatched,
            outcomes=self.submitter.writer,
            direct=direct_store(runtime.engine),
        )
        direct = self.receiver.direct
        if direct is not None and direct.receipt_sessions is not None:
            self.submitter.writer.write_on_loop(direct.receipt_sessions, direct.committed)
        self._backoff = RetryPolicy(
            base_seconds=settings.reconnect_min_seconds,
            cap_seconds=max(settings.reconnect_min_seconds, settings.reconnect_max_seconds),
        )
        self._stopping = asyncio.Event()
        self._last_close_reason = ""
        self.bound: Bound | None = None

    def stop(self) -> None:
        """Ask the link to finish: in-flight submits are answered, then it unbinds."""
        self._stopping.set()

    async def run(self) -> None:
        """Run until :meth:`stop`. The caller must own the operator (manager.py)."""
        name = self.settings.operator_id
        await self.submitter.recover()
        housekeeping = asyncio.create_task(self._housekeeping(), name=f"{name} housekeeping")
        failures = 0
        try:
            while not self._stopping.is_set():
                self.state.set_status("connecting")
                try:
                    self.bound = await self._bind()
                except (OSError, TimeoutError, SmppError) as exc:
                    failures += 1
                    kind = "bind" if isinstance(exc, BindFailed) else "connect"
                    self.state.error(kind, str(exc) or type(exc).__name__)
                    log.warning("%s: %s failed: %s", name, kind, exc)
                    await self._wait_before_retry(failures)
                    continue
                failures = 0
                self.state.set_status("bound", self._runtime.clock.now())
                log.info("%s: bound to %s:%d", name, self.settings.host, self.settings.port)
                try:
                    await self._serve(self.bound)
                finally:
                    await self._close(self.bound)
                    self.bound = None
                if not self._stopping.is_set():
                    self.state.reconnected()
                    self.state.error("session", self._close_reason())
                    failures = 1
                    await self._wait_before_retry(failures)
        finally:
            housekeeping.cancel()
            await asyncio.gather(housekeeping, return_exceptions=True)
            await self.receiver.close()
            await self.submitter.writer.flush()
            self.state.set_status("stopped")

    def _close_reason(self) -> str:
        return self._last_close_reason or "connection lost"

    async def _bind(self) -> Bound:
        s = self.settings
        if s.bind_mode == "transceiver":
            session = await self._open(BindTransceiver)
            return Bound(session, session)
        transmitter = await self._open(BindTransmitter)
        try:
            receiver = await self._open(BindReceiver)
        except BaseException:
            await transmitter.close("receiver bind failed")
            raise
        return Bound(transmitter, receiver)

    async def _open(
        self, bind: type[BindTransceiver] | type[BindTransmitter] | type[BindReceiver]
    ) -> SmppSession:
        s = self.settings
        connection_id = uuid.uuid4().hex
        config = SessionConfig(
            window=s.window,
            response_timeout=s.response_timeout_seconds,
            enquire_link_interval=s.enquire_link_seconds,
            inactivity_timeout=s.inactivity_seconds,
            handler_concurrency=max(256, 2 * s.window),
        )
        session = await connect(
            s.host,
            s.port,
            config=config,
            connect_timeout=s.connect_timeout_seconds,
            name=f"{s.operator_id}/{bind.__name__}",
        )
        session.handler = self.receiver.handler_for(session, connection_id)
        try:
            request: BindRequest[Any] = bind(
                system_id=s.system_id, password=s.password, system_type=s.system_type
            )
            await session.bind(request, s.connect_timeout_seconds)
        except BaseException:
            await session.close("bind failed")
            raise
        return session

    async def _serve(self, bound: Bound) -> None:
        stop = asyncio.create_task(self._stopping.wait())
        closed = [asyncio.create_task(session.wait_closed()) for session in bound.all()]
        submit = asyncio.create_task(self.submitter.run(bound.transmitter, self._stopping))
        try:
            await asyncio.wait([stop, submit, *closed], return_when=asyncio.FIRST_COMPLETED)
            if self._stopping.is_set():
                # Let what is in flight be answered before unbinding.
                await asyncio.wait([submit], timeout=self.settings.response_timeout_seconds + 5)
        finally:
            # Unbinding first makes the submitter stop sending (the session refuses new
            # requests) and lets the outstanding ones be answered within the grace period.
            for session in bound.all():
                if not session.closed:
                    with contextlib.suppress(Exception):
                        await session.unbind(UNBIND_GRACE_SECONDS)
            await asyncio.wait([submit], timeout=self.settings.response_timeout_seconds + 5)
            for task in (stop, *closed, submit):
                if not task.done():
                    task.cancel()
            await asyncio.gather(stop, *closed, return_exceptions=True)
            if submit.done() and not submit.cancelled() and submit.exception() is not None:
                self.state.error("submitter", str(submit.exception()))
                log.error(
                    "%s: submitter failed", self.settings.operator_id, exc_info=submit.exception()
                )
            with contextlib.suppress(BaseException):
                await submit
            reasons = [s.close_reason for s in bound.all() if s.close_reason]
            self._last_close_reason = "; ".join(reasons) or "closed"

    async def _close(self, bound: Bound) -> None:
        for session in bound.all():
            await session.close("link closing")
        self.state.in_flight = lambda: 0
        # Outcomes of the last submits, including the unknown ones, go to the database now.
        await self.submitter.writer.flush()

    async def _wait_before_retry(self, failures: int) -> None:
        self.state.set_status("backoff")
        delay = self._backoff.delay(failures, 0.5 + 0.5 * self._rand())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)

    async def _housekeeping(self) -> None:
        while True:
            try:
                await self.receiver.housekeeping()
            except Exception as exc:
                self.state.error("database", str(exc))
            await asyncio.sleep(HOUSEKEEPING_SECONDS)
