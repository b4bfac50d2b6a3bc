"""Sending MTs: claim queued rows of one operator, submit their parts within the window and the
TPS limit, and record every outcome.

Life of an MT on the link (``mt_messages.status``)::

    queued --claim--> submitting --all parts accepted--> submitted (receipts move it on)
      ^                  |--a part refused for good-----> failed (error_code kept)
      |                  |--a part never answered-------> unknown (never re-sent)
      +--ESME_RTHROTTLED / ESME_RMSGQFUL, or not sent---+  (next_attempt_at later)

- Claiming marks rows ``submitting`` in one statement (``claims.py``: ``FOR UPDATE SKIP
  LOCKED`` on PostgreSQL; SQLite's single writer serialises). Only the owner of the operator's bind
  claims its MTs, so a row in ``submitting`` at start belongs to a process that died: we
  cannot know whether its parts left, so :meth:`Submitter.recover` marks it ``unknown``.
- The replies to the MOs this link receives are claimed by the MOs' own transaction
  (``receiver.py``) and handed over with :meth:`Submitter.take`: no claim of their own. A
  claim reads the database only when something may be waiting there: at start, after a
  nudge (an MT queued in this process), after a claim that found some (more may follow), and
  every :data:`IDLE_POLL_SECONDS` (MTs queued by other processes, retries come due).
- Parts go out through ``SmppSession.start_request``, which waits for room in the window;
  one task keeps the window full and a done-callback per request collects the responses.
- Outcomes are written in batches, many responses per transaction (``ResultWriter``), under
  the link's write lock so that a receipt processed at the same time is never missed (see
  ``receiver.py``).
- Parts the SMSC accepted are recorded in ``mt_parts`` with the operator's message id even
  when another part of the same MT must be retried, so a retry sends only the missing parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from smsgate.domain.backoff import RetryPolicy
from smsgate.domain.clock import Clock
from smsgate.domain.errors import TextError
from smsgate.domain.receipts import canonical_submit_id
from smsgate.domain.throttle import TokenBucket
from smsgate.links import claims
from smsgate.links.pdus import ClaimedMt, submit_pdus
from smsgate.links.settings import LinkSettings
from smsgate.links.state import LinkState
from smsgate.links.writer import MtOutcome, PartOutcome, ResultWriter
from smsgate.metrics import MT_SUBMITTED
from smsgate.runtime import Nudge
from smsgate.smpp import (
    CommandStatus,
    ConnectionLost,
    GenericNackReceived,
    InvalidBindState,
    PduEncodeError,
    ResponseTimeout,
    SmppError,
    SmppSession,
    SubmitSmResp,
)

log = logging.getLogger(__name__)
S = CommandStatus

# SMPP 3.4 §5.1.3: the SMSC is overloaded or rate-limits us: the message was not taken.
TEMPORARY: Final = frozenset({S.ESME_RTHROTTLED, S.ESME_RMSGQFUL, S.ESME_RX_T_APPN})
IDLE_POLL_SECONDS: Final = 1.0
CLAIM_GATHER_SECONDS: Final = 0.02
"""After a claim that found less than a full batch, the next waits this long since it: MTs
accepted one by one gather into one claim (a transaction) instead of one claim each. Replies
handed over meanwhile (:meth:`Submitter.take`) go out at once: a person waits for them."""


def status_name(status: int) -> str:
    try:
        return CommandStatus(status).name
    except ValueError:
        return f"0x{status:08X}"


@dataclass(slots=True)
class _Flight:
    """One MT between its claim and its outcome."""

    mt: ClaimedMt
    waiting: int = 0
    sending: bool = True  # parts are still being handed to the session
    parts: dict[int, PartOutcome] = field(default_factory=dict)
    numbers: tuple[int, ...] = ()  # the parts this attempt is to send
    accepted: int = 0  # parts answered ESME_ROK
    temporary: int = 0  # the command_status of a throttling answer, if any
    not_sent: bool = False
    failed: str = ""


class Submitter:
    """The MT side of one operator link; lives as long as the link, across reconnections."""

    def __init__(
        self,
        settings: LinkSettings,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        nudge: Nudge,
        state: LinkState,
        write_lock: asyncio.Lock,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self._sessions = sessions
        self._clock = clock
        self._nudge = nudge
        self._state = state
        self._monotonic = monotonic
        self._rand = rand
        burst = max(1.0, min(float(settings.tps), max(settings.window, settings.tps / 20)))
        self.bucket = TokenBucket(rate=settings.tps, burst=burst, now=monotonic())
        self._retry = RetryPolicy(
            base_seconds=settings.retry_min_seconds,
            cap_seconds=max(settings.retry_min_seconds, settings.retry_max_seconds),
        )
        self._write_lock = write_lock
        self.writer = ResultWriter(settings.operator_id, sessions, clock, write_lock, state)
        self._flights: set[int] = set()
        self._drained = asyncio.Event()
        self._drained.set()
        # MTs claimed by someone else's transaction (replies to MOs), for the running session.
        self._handed: list[ClaimedMt] = []
        self._handed_ready = asyncio.Event()
        self._running = False
        self._look = True  # whether a claim may find something (see the module docstring)
        state.send_rate = lambda: self.bucket.current_rate
        self._id_format = settings.dlr_id_format
        self._ok_counter = MT_SUBMITTED.labels(settings.operator_id, "ok")

    # --- start-up -------------------------------------------------------------------------

    async def recover(self) -> int:
        """Mark MTs left ``submitting`` by a process that died as ``unknown``.

        Call once, after taking ownership of the operator and before the first claim. Their
        parts may or may not have reached the SMSC; re-sending could deliver them twice.
        """
        count = await claims.mark_interrupted(
            self._sessions, self.settings.operator_id, self._clock.now()
        )
        if count:
            log.warning(
                "%s: %d MTs were being submitted when the last owner stopped: marked unknown",
                self.settings.operator_id,
                count,
            )
        return count

    # --- claiming -------------------------------------------------------------------------

    async def claim(self, limit: int) -> list[ClaimedMt]:
        # Under the write lock: a receipt for a part sent in an earlier attempt must see the
        # retried MT either queued or submitting, never half-way (see ResultWriter).
        async with self._write_lock:
            return await self._claim(limit)

    async def _claim(self, limit: int) -> list[ClaimedMt]:
        return await claims.claim(
            self._sessions, self.settings.operator_id, self._clock.now(), limit
        )

    # --- sending --------------------------------------------------------------------------

    async def run(self, session: SmppSession, stopping: asyncio.Event) -> None:
        """Submit while ``session`` is open and ``stopping`` is not set; on return every MT
        claimed by this run (or handed to it) has its outcome handed to the writer (not
        necessarily written: call ``writer.flush()``)."""
        limit = self.settings.claim_batch
        self._state.in_flight = lambda: session.outstanding
        prefetch: asyncio.Task[list[ClaimedMt]] | None = None
        loop = asyncio.get_running_loop()
        self._running = True
        self._look = True
        try:
            while not stopping.is_set() and not session.closed:
                if self._handed:
                    batch = self._handed[:limit]
                    del self._handed[:limit]
                    if not self._handed:
                        self._handed_ready.clear()
                    await self._send_batch(session, stopping, batch)
                    continue
                if prefetch is not None:
                    batch = await prefetch
                    prefetch = None
                elif self._look:
                    self._look = False
                    batch = await self.claim(limit)
                else:
                    await self._idle(session, stopping)
                    continue
                if not batch:
                    continue
                self._look = True  # some were waiting: more may be
                if len(batch) == limit:
                    # More is waiting: claim the next batch while this one goes out.
                    self._look = False
                    prefetch = asyncio.create_task(self.claim(limit))
                    await self._send_batch(session, stopping, batch)
                    continue
                claimed_at = loop.time()
                await self._send_batch(session, stopping, batch)
                rest = claimed_at + CLAIM_GATHER_SECONDS - loop.time()
                if rest > 0 and not stopping.is_set() and not self._handed:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._handed_ready.wait(), rest)
        finally:
            self._running = False
            handed, self._handed = self._handed, []
            self._handed_ready.clear()
            for mt in handed:
                self._finish_unsent(mt)
            if prefetch is not None:
                batch = await _result_or_empty(prefetch)
                for mt in batch:
                    self._finish_unsent(mt)
            await self._wait_drained(session)

    def take(self, claimed: Sequence[ClaimedMt]) -> None:
        """Send MTs another transaction claimed for this link (``submitting``, attempts
        counted) as soon as the window allows; with no session running, they are queued
        again (through the writer, like MTs a closing session could not send)."""
        if not claimed:
            return
        if not self._running:
            for mt in claimed:
                self._finish_unsent(mt)
            return
        self._handed.extend(claimed)
        self._handed_ready.set()

    async def _idle(self, session: SmppSession, stopping: asyncio.Event) -> None:
        nudged = asyncio.create_task(self._nudge.wait(IDLE_POLL_SECONDS))
        waiters = [
            nudged,
            asyncio.create_task(self._handed_ready.wait()),
            asyncio.create_task(stopping.wait()),
            asyncio.create_task(session.wait_closed()),
        ]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        if nudged.done() and not nudged.cancelled():
            # Nudged (an MT was queued in this process) or the poll is due.
            self._look = True

    async def _send_batch(
        self, session: SmppSession, stopping: asyncio.Event, batch: list[ClaimedMt]
    ) -> None:
        timeout = self.settings.response_timeout_seconds
        for index, mt in enumerate(batch):
            if stopping.is_set() or session.closed:
                for rest in batch[index:]:
                    self._finish_unsent(rest)
                return
            try:
                pdus = submit_pdus(mt, self.settings)
            except (TextError, ValueError) as exc:
                self._finish_failed(mt, "encoding", str(exc))
                continue
            flight = _Flight(mt, numbers=tuple(number for number, _ in pdus))
            self._flights.add(mt.id)
            self._drained.clear()
            for part_no, pdu in pdus:
                if flight.not_sent or flight.failed or session.closed:
                    flight.not_sent = flight.not_sent or session.closed
                    break
                await self._take_token()
                try:
                    future = await session.start_request(pdu, timeout)
                except (ConnectionLost, InvalidBindState):
                    flight.not_sent = True
                    break
                except PduEncodeError as exc:
                    flight.failed = f"encoding: {exc}"[:32]
                    break
                flight.waiting += 1
                future.add_done_callback(partial(self._on_response, flight, part_no))
            flight.sending = False
            if flight.waiting == 0:
                self._finish(flight)

    async def _take_token(self) -> None:
        while True:
            wait = self.bucket.take(self._monotonic())
            if wait <= 0.0:
                return
            await asyncio.sleep(wait)

    def _on_response(self, flight: _Flight, part_no: int, future: asyncio.Future[Any]) -> None:
        flight.waiting -= 1
        if not future.cancelled() and future.exception() is None:
            # The common case first: accepted.
            response: SubmitSmResp = future.result()
            if response.command_status == S.ESME_ROK:
                message_id = canonical_submit_id(response.message_id, self._id_format)
                flight.parts[part_no] = PartOutcome(part_no, "submitted", message_id, "")
                flight.accepted += 1
            else:
                self._on_status(flight, part_no, response.command_status)
        elif future.cancelled():
            flight.parts[part_no] = PartOutcome(part_no, "unknown", "", "cancelled")
        else:
            error = future.exception()
            if isinstance(error, GenericNackReceived):
                self._on_status(flight, part_no, error.command_status)
            elif isinstance(error, ResponseTimeout):
                flight.parts[part_no] = PartOutcome(part_no, "unknown", "", "no response")
            elif isinstance(error, ConnectionLost):
                flight.parts[part_no] = PartOutcome(part_no, "unknown", "", "connection lost")
            else:
                # A response that could not be read: the SMSC may have taken the part.
                reason = "bad response" if isinstance(error, SmppError) else "error"
                log.warning("%s: submit_sm answered badly: %s", self.settings.operator_id, error)
                flight.parts[part_no] = PartOutcome(part_no, "unknown", "", reason)
        if flight.waiting == 0 and not flight.sending:
            self._finish(flight)

    def _on_status(self, flight: _Flight, part_no: int, status: int) -> None:
        """A refusal (any status but ESME_ROK)."""
        if status in TEMPORARY:
            flight.temporary = status
            self.bucket.slow_down(self._monotonic())
        else:
            flight.parts[part_no] = PartOutcome(part_no, "failed", "", status_name(status))

    # --- outcomes -------------------------------------------------------------------------

    def _finish(self, flight: _Flight) -> None:
        mt = flight.mt
        parts = list(flight.parts.values())
        if flight.accepted == len(flight.numbers) and not flight.failed:
            # The common case first: every part accepted.
            self.writer.add(MtOutcome(mt.id, "submitted", "", parts, retried=mt.attempts > 1))
            self._state.submitted += 1
            self._state.submit_meter.add()
            self._ok_counter.inc()
            self._done(mt.id)
            return
        states = {part.status for part in parts}
        now = self._clock.now()
        op = self.settings.operator_id
        if flight.failed or "failed" in states:
            error = flight.failed or next(p.error for p in parts if p.status == "failed")
            outcome = MtOutcome(mt.id, "failed", error, parts, retried=mt.attempts > 1)
            self._state.failed += 1
            MT_SUBMITTED.labels(op, "failed").inc()
        elif "unknown" in states:
            error = next(p.error for p in parts if p.status == "unknown")
            outcome = MtOutcome(mt.id, "unknown", error, parts, retried=mt.attempts > 1)
            self._state.unknown += 1
            MT_SUBMITTED.labels(op, "unknown").inc()
        elif flight.temporary or flight.not_sent:
            if flight.temporary:
                error = status_name(flight.temporary)
                delay = self._retry.delay(max(1, mt.attempts), 0.5 + 0.5 * self._rand())
                self._state.throttled += 1
                MT_SUBMITTED.labels(op, "throttled").inc()
            else:
                error, delay = "", 0.0
            waiting = tuple(n for n in flight.numbers if n not in flight.parts)
            outcome = MtOutcome(
                mt.id,
                "queued",
                error,
                parts,
                next_attempt_at=now + timedelta(seconds=delay),
                waiting_parts=waiting,
                retried=mt.attempts > 1,
            )
        else:
            outcome = MtOutcome(mt.id, "submitted", "", parts, retried=mt.attempts > 1)
            self._state.submitted += 1
            self._state.submit_meter.add()
            MT_SUBMITTED.labels(op, "ok").inc()
        self.writer.add(outcome)
        self._done(mt.id)

    def _done(self, mt_id: int) -> None:
        self._flights.discard(mt_id)
        if not self._flights:
            self._drained.set()

    def _finish_unsent(self, mt: ClaimedMt) -> None:
        now = self._clock.now()
        waiting: tuple[int, ...] = ()
        if mt.attempts > 1:
            # Its part rows were moved to "submitting" by the claim: put them back.
            with contextlib.suppress(TextError, ValueError):
                waiting = tuple(number for number, _ in submit_pdus(mt, self.settings))
        self.writer.add(
            MtOutcome(
                mt.id,
                "queued",
                "",
                [],
                next_attempt_at=now,
                waiting_parts=waiting,
                retried=mt.attempts > 1,
            )
        )

    def _finish_failed(self, mt: ClaimedMt, kind: str, message: str) -> None:
        log.warning("%s: MT %d cannot be sent: %s", self.settings.operator_id, mt.id, message)
        self._state.failed += 1
        MT_SUBMITTED.labels(self.settings.operator_id, "failed").inc()
        self.writer.add(MtOutcome(mt.id, "failed", kind, [], retried=mt.attempts > 1))

    async def _wait_drained(self, session: SmppSession) -> None:
        # Every request ends: answered, timed out, or failed when the session closes.
        limit = self.settings.response_timeout_seconds + 5.0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drained.wait(), limit)
        if self._flights:
            log.error(
                "%s: %d MTs still without an outcome", self.settings.operator_id, len(self._flights)
            )


async def _result_or_empty(task: asyncio.Task[list[ClaimedMt]]) -> list[ClaimedMt]:
    try:
        return await task
    except Exception:
        log.exception("claiming MTs failed")
        return []
