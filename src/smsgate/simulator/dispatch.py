"""Sending delivery receipts: each one when it is due, many per wake-up, to a bound receiver
of the operator that accepted the message.

A receipt due while no receiver or transceiver of its operator is bound waits (boundedly) for
one to bind, as an SMSC stores receipts for an ESME that is away. A receipt the ESME does not
acknowledge (connection lost, no answer, an error status) is retried a few times.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from smsgate.simulator.tracking import Tracked
from smsgate.smpp.errors import SessionError, SmppError
from smsgate.smpp.pdu import DeliverSm
from smsgate.smpp.session import SmppSession

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
RETRY_AFTER = 1.0  # seconds
LATENCIES_KEPT = 100_000


class Receivers(Protocol):
    def receiver_for(self, operator: str, preferred: SmppSession | None) -> SmppSession | None:
        """A session of ``operator`` that may be sent deliver_sm now, or None."""
        ...


@dataclass(slots=True)
class PendingReceipt:
    operator: str
    pdu: DeliverSm
    tracked: Tracked | None = None
    preferred: SmppSession | None = None
    attempts: int = 0
    sent_at: float = 0.0  # loop time of the last attempt's deliver_sm


# (due, order, receipt): tuples compare in C, and ``order`` is unique, so the receipts
# themselves are never compared.
_Entry = tuple[float, int, PendingReceipt]


@dataclass(slots=True)
class ReceiptCounters:
    sent: int = 0
    acknowledged: int = 0
    failed: int = 0  # gave up after MAX_ATTEMPTS
    dropped: int = 0  # no room to keep it while no receiver was bound


class ReceiptDispatcher:
    def __init__(self, receivers: Receivers, *, limit: int = 100_000) -> None:
        self._receivers = receivers
        self._limit = limit
        self._heap: list[_Entry] = []
        self._waiting: dict[str, deque[PendingReceipt]] = {}
        self._waiting_count = 0
        self._order = itertools.count()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        self.counters = ReceiptCounters()
        # Seconds from each acknowledged receipt's deliver_sm to its response, the latest
        # LATENCIES_KEPT: how long the ESME takes to answer (benchmarks).
        self.latencies: deque[float] = deque(maxlen=LATENCIES_KEPT)

    @property
    def pending(self) -> int:
        return len(self._heap) + self._waiting_count

    def start(self) -> None:
        if self._task is None:
            self._task = self._loop.create_task(self._run(), name="simulator receipts")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def schedule(
        self,
        operator: str,
        pdu: DeliverSm,
        delay: float,
        *,
        tracked: Tracked | None = None,
        preferred: SmppSession | None = None,
    ) -> None:
        if self.pending >= self._limit:
            self.counters.dropped += 1
            return
        entry = (
            self._loop.time() + delay,
            next(self._order),
            PendingReceipt(operator, pdu, tracked, preferred),
        )
        heapq.heappush(self._heap, entry)
        if self._heap[0] is entry:
            self._wake.set()

    async def send_now(
        self,
        operator: str,
        pdu: DeliverSm,
        *,
        tracked: Tracked | None = None,
        preferred: SmppSession | None = None,
    ) -> None:
        """Put the receipt on the wire before returning when a receiver has window room (the
        caller then writes its submit_sm_resp after it); otherwise schedule it at once."""
        await self._send(PendingReceipt(operator, pdu, tracked, preferred))

    def receiver_bound(self, operator: str) -> None:
        """A receiver of ``operator`` bound: the receipts that waited for one are due now."""
        waiting = self._waiting.pop(operator, None)
        if not waiting:
            return
        self._waiting_count -= len(waiting)
        now = self._loop.time()
        for item in waiting:
            heapq.heappush(self._heap, (now, next(self._order), item))
        self._wake.set()

    async def _run(self) -> None:
        heap = self._heap
        while True:
            if not heap:
                self._wake.clear()
                await self._wake.wait()
                continue
            delay = heap[0][0] - self._loop.time()
            if delay > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                continue
            # One loop pass first: the session writes a handler's response from a callback
            # that runs after this wake-up, and a receipt must not overtake its
            # submit_sm_resp (unless DlrSettings.before_resp asks for exactly that).
            await asyncio.sleep(0)
            now = self._loop.time()
            while heap and heap[0][0] <= now:
                item = heapq.heappop(heap)[2]
                if item.tracked is not None and item.tracked.cancelled:
                    continue  # SMPP 3.4 §4.9: a cancelled message is never delivered
                try:
                    await self._send(item)
                except Exception:  # one bad receipt must not stop the others
                    log.exception("receipt for %s not sent", item.operator)

    async def _send(self, item: PendingReceipt) -> None:
        session = self._receivers.receiver_for(item.operator, item.preferred)
        if session is None:
            self._wait_for_receiver(item)
            return
        item.attempts += 1
        try:
            future = await session.start_request(item.pdu)
        except SmppError:
            self._retry(item)
            return
        self.counters.sent += 1
        item.sent_at = self._loop.time()
        future.add_done_callback(self._acknowledged(item))

    def _acknowledged(self, item: PendingReceipt) -> Callable[[asyncio.Future[Any]], None]:
        def done(future: asyncio.Future[Any]) -> None:
            if future.cancelled():
                return
            error = future.exception()
            if error is None and future.result().command_status == 0:
                self.counters.acknowledged += 1
                self.latencies.append(self._loop.time() - item.sent_at)
                return
            if error is not None and not isinstance(error, SessionError):
                log.warning("receipt for %s: %s", item.operator, error)
            self._retry(item)

        return done

    def _retry(self, item: PendingReceipt) -> None:
        if item.attempts >= MAX_ATTEMPTS:
            self.counters.failed += 1
            return
        item.preferred = None
        heapq.heappush(self._heap, (self._loop.time() + RETRY_AFTER, next(self._order), item))
        self._wake.set()

    def _wait_for_receiver(self, item: PendingReceipt) -> None:
        if self.pending >= self._limit:
            self.counters.dropped += 1
            return
        self._waiting.setdefault(item.operator, deque()).append(item)
        self._waiting_count += 1
