"""Receiving from the SMSC: MOs and delivery receipts, committed before they are acknowledged.

The session hands each deliver_sm (or data_sm) to :meth:`Receiver.handle`, which queues it and
waits. A single task takes everything queued, processes it in one transaction (a savepoint
per PDU, so one bad PDU does not sink the rest), commits, and only then releases the
handlers, whose responses the session writes: nothing is acknowledged before it is durable
(DESIGN.md §2.1), and a burst of receipts costs one commit, not one per receipt (receipts
gather until the SMSC's window is full, or for 10 ms at most: ``receipt_gathering.py``).

Answers: ESME_ROK once committed. When the database fails, ESME_RX_T_APPN (SMPP 3.4 §5.1.3,
temporary application error): the SMSC keeps the message and delivers it again later. A
receipt we cannot read is acknowledged and counted as an error; refusing it would only make
the SMSC repeat it forever.

The replies of the MOs are claimed for this link in the MOs' transaction and handed to the
submitter once it commits (``on_replies``): no claim transaction stands between an MO and its
reply. MOs and receipts are queued apart and stored by two tasks, in transactions of their own:
an MO never waits for a batch of receipts (only, on SQLite, for the one write lock), and goes
on the direct path when there is one (``mo_direct.py``: the transaction in one hand-over).

Receipts and submit outcomes are written under the link's write lock. Without it, on
PostgreSQL, a receipt and the submit_sm_resp of its part could commit at the same moment,
each transaction not seeing the other's row, and the receipt would wait for the worker's
sweep of early receipts (services/dlr_sweep.py) instead of being applied with its part.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from smsgate.domain.clock import Clock
from smsgate.links import mo_store
from smsgate.links.ack_guards import ConfirmedGuards
from smsgate.links.incoming import is_receipt, read_mo, read_receipt
from smsgate.links.mo_direct import DirectStore, NotDirect
from smsgate.links.pdus import ClaimedMt
from smsgate.links.receipt_gathering import DeliverWindows
from smsgate.links.settings import LinkSettings
from smsgate.links.state import LINK_DELIVER_SM, LinkState
from smsgate.links.writer import MtOutcome, ResultWriter
from smsgate.services.dlr import IncomingReceipt, receive_receipts
from smsgate.services.mo import MoHandler
from smsgate.smpp import (
    AlertNotification,
    CommandStatus,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    Handler,
    IncomingPdu,
    Outbind,
    PduError,
    Response,
    SmppSession,
)
from smsgate.store.db import sqlite_lock_busy

log = logging.getLogger(__name__)
S = CommandStatus
MAX_BATCH: Final = 500


@dataclass(frozen=True, slots=True)
class _Result:
    status: int
    kind: str  # mo | fragment | redelivery | receipt | receipt_unreadable | refused
    guard: int | None = None
    error: tuple[str, str] | None = None
    mo_id: int | None = None  # an MO stored by this batch
    item_handled: bool = False  # see services/mo.MoOutcome


@dataclass(slots=True)
class _Item:
    pdu: DeliverSm | DataSm
    session: SmppSession
    connection_id: str
    future: asyncio.Future[Response] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Receiver:
    """The receiving side of one operator link; lives as long as the link."""

    def __init__(
        self,
        settings: LinkSettings,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        handlers: Mapping[str, MoHandler],
        state: LinkState,
        write_lock: asyncio.Lock,
        on_committed: Callable[[], None] = lambda: None,
        on_mts_queued: Callable[[], None] = lambda: None,
        on_replies: Callable[[list[ClaimedMt]], None] = lambda claimed: None,
        on_unmatched: Callable[[str], None] = lambda message_id: None,
        outcomes: ResultWriter | None = None,
        direct: DirectStore | None = None,
    ) -> None:
        self.settings = settings
        self._sessions = sessions
        self._clock = clock
        self._handlers = handlers
        self._state = state
        self._lock = write_lock
        self._on_committed = on_committed
        self._on_mts_queued = on_mts_queued
        self._on_replies = on_replies
        self._on_unmatched = on_unmatched
        self._outcomes = outcomes
        self._direct = direct
        self._mo_queue: list[_Item] = []
        self._receipt_queue: list[_Item] = []
        self._mo_task: asyncio.Task[None] | None = None
        self._receipt_task: asyncio.Task[None] | None = None
        self._windows = DeliverWindows()
        self._guards = ConfirmedGuards(
            sessions, state, settings.response_timeout_seconds, lambda: self._mo_task
        )
        self.batches = 0
        self.direct_batches = 0  # of them, done on the direct path (for tests and benchmarks)

    @property
    def receipt_windows(self) -> DeliverWindows:
        """The deliver_sm each session has unanswered, and how receipt batches started."""
        return self._windows

    @property
    def direct(self) -> DirectStore | None:
        """The store of the direct path, if there is one (``mo_direct.py``)."""
        return self._direct

    def handler_for(self, session: SmppSession, connection_id: str) -> Handler:
        """The request handler of one session (``connection_id`` names that connection)."""

        async def handle(pdu: IncomingPdu) -> Response | None:
            if isinstance(pdu, DeliverSm | DataSm):
                item = _Item(pdu, session, connection_id)
                self._windows.arrived(session)
                if is_receipt(pdu):
                    self._receipt_queue.append(item)
                    if self._receipt_task is None or self._receipt_task.done():
                        loop = asyncio.get_running_loop()
                        self._receipt_task = loop.create_task(self._run_receipts())
                else:
                    self._mo_queue.append(item)
                    if self._mo_task is None or self._mo_task.done():
                        self._mo_task = asyncio.get_running_loop().create_task(self._run_mos())
                try:
                    return await item.future
                finally:
                    self._windows.answered(session)
            if isinstance(pdu, AlertNotification | Outbind):
                return None  # §4.12, §4.1.7: notifications; nothing to answer
            raise PduError(S.ESME_RINVCMDID, f"{pdu.command_id.name} is not for an ESME")

        return handle

    async def close(self) -> None:
        """Finish the batch in progress; drop what is queued (it was never acknowledged)."""
        for queue in (self._mo_queue, self._receipt_queue):
            for item in queue:
                if not item.future.done():
                    item.future.set_result(_response(item.pdu, S.ESME_RX_T_APPN))
            queue.clear()
        for task in (self._mo_task, self._receipt_task):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._guards.close()
        if self._direct is not None:
            await self._direct.aclose()

    async def _run_mos(self) -> None:
        while self._mo_queue:
            batch = self._mo_queue[:MAX_BATCH]
            del self._mo_queue[:MAX_BATCH]
            if self._direct is None or not await self._process_direct(batch):
                await self._process(batch)

    async def _run_receipts(self) -> None:
        while self._receipt_queue:
            # Until the SMSC's window is full, or for 10 ms at most (receipt_gathering.py).
            await self._windows.gather(self._receipt_queue, MAX_BATCH // 4)
            batch = self._receipt_queue[:MAX_BATCH]
            del self._receipt_queue[:MAX_BATCH]
            await self._process(batch)

    async def _process_direct(self, batch: list[_Item]) -> bool:
        """MOs on the direct path (``mo_direct.py``); False when they need the ordinary one
        (nothing was written then)."""
        assert self._direct is not None
        parts = [read_mo(item.pdu) for item in batch]
        if any(part.concat is not None for part in parts):
            return False
        now = self._clock.now()
        confirmed = self._guards.take()
        try:
            alphabet = self.settings.default_alphabet
            mos = [
                mo_store.WholeMo(part, part.text(alphabet), item.connection_id)
                for part, item in zip(parts, batch, strict=True)
            ]

            transaction = partial(
                mo_store.store_and_claim,
                operator_id=self.settings.operator_id,
                mos=mos,
                now=now,
                redelivery_window=timedelta(seconds=self.settings.mo_redelivery_seconds),
                handlers=self._handlers,
                confirmed=confirmed,
            )
            async with self._lock if self._direct.serialised else contextlib.nullcontext():
                stored, claimed = await self._direct.run(transaction, size=len(batch))
        except NotDirect as exc:
            log.debug("%s: MO batch not direct: %s", self.settings.operator_id, exc)
            self._guards.restore(confirmed)
            return False
        except Exception:
            # The ordinary path does it again, and reports the failure if it is one.
            log.debug("%s: direct MO batch failed", self.settings.operator_id, exc_info=True)
            self._guards.restore(confirmed)
            return False
        self.direct_batches += 1
        self._answer(batch, [_mo_result(one) for one in stored], claimed)
        return True

    async def _process(self, batch: list[_Item]) -> None:
        try:
            # One transaction for the whole batch; only when a PDU fails is the batch done
            # again with a savepoint per PDU, so that the failure sinks that PDU alone.
            try:
                try:
                    results, claimed = await self._store(batch, isolate=False)
                except Exception as exc:
                    if not sqlite_lock_busy(exc):
                        raise
                    # The loop's connection found SQLite's write lock taken (another process
                    # writing): the same batch the ordinary way, which waits for the lock.
                    results, claimed = await self._store(batch, isolate=False, on_loop=False)
            except Exception:
                results, claimed = await self._store(batch, isolate=True)
        except Exception as exc:
            log.exception(
                "%s: could not store %d deliveries", self.settings.operator_id, len(batch)
            )
            self._state.error("database", str(exc))
            results, claimed = [_Result(S.ESME_RX_T_APPN, "refused")] * len(batch), []
        self._answer(batch, results, claimed)

    def _answer(self, batch: list[_Item], results: list[_Result], claimed: list[ClaimedMt]) -> None:
        """Answer the SMSC once the batch is committed (or refused), then hand over the
        replies and wake whoever has work now."""
        self.batches += 1
        guards: dict[str, tuple[SmppSession, list[int]]] = {}
        for item, result in zip(batch, results, strict=True):
            if not item.future.done():
                item.future.set_result(_response(item.pdu, result.status))
            self._count(result)
            if result.guard is not None:
                guards.setdefault(item.connection_id, (item.session, []))[1].append(result.guard)
        for smpp_session, ids in guards.values():
            self._guards.probe(smpp_session, ids)
        self._on_replies(claimed)
        if any(result.status == S.ESME_ROK for result in results):
            self._on_committed()
            if any(result.item_handled for result in results):
                self._on_mts_queued()

    def _count(self, result: _Result) -> None:
        LINK_DELIVER_SM.labels(self.settings.operator_id, result.kind).inc()
        if result.kind == "mo":
            self._state.mo_received += 1
        elif result.kind == "receipt":
            self._state.receipts_received += 1
        if result.error:
            self._state.error(*result.error)

    async def _store(
        self, batch: list[_Item], *, isolate: bool, on_loop: bool = True
    ) -> tuple[list[_Result], list[ClaimedMt]]:
        now = self._clock.now()
        receipts = [i for i, item in enumerate(batch) if is_receipt(item.pdu)]
        mos = [i for i, item in enumerate(batch) if not is_receipt(item.pdu)]
        results: list[_Result | None] = [None] * len(batch)
        # The confirmed guards go with a batch of MOs (the next MOs look for guards).
        confirmed = self._guards.take() if mos else []
        outcomes: list[MtOutcome] = []
        waiting: list[str] = []
        # Receipts on the loop when the direct store offers it (inline_sqlite.py); when the
        # write lock is taken there, the isolated attempt goes the ordinary way.
        direct = self._direct if on_loop and not (mos or isolate) else None
        inline = direct.receipt_sessions if direct is not None else None
        try:
            async with contextlib.AsyncExitStack() as stack:
                if receipts:
                    if self._outcomes is not None:
                        await self._outcomes.settled()
                    await stack.enter_async_context(self._lock)
                    if self._outcomes is not None and not isolate:
                        # The submit outcomes waiting in memory go first, so that receipts
                        # find their parts (most SMSCs answer with the receipt at once).
                        outcomes = self._outcomes.take()
                session = await stack.enter_async_context((inline or self._sessions)())
                await stack.enter_async_context(session.begin())
                if confirmed:
                    await mo_store.confirm_acks(session, confirmed)
                if outcomes and self._outcomes is not None:
                    waiting = await self._outcomes.write_in(session, outcomes)
                if isolate:
                    for i, item in enumerate(batch):
                        results[i] = await self._isolated(session, item, now)
                else:
                    if mos:
                        stored = await self._mos(session, [batch[i] for i in mos], now)
                        for i, result in zip(mos, stored, strict=True):
                            results[i] = result
                    if receipts:
                        stored = await self._receipts(session, [batch[i] for i in receipts], now)
                        for i, result in zip(receipts, stored, strict=True):
                            results[i] = result
                mo_ids = [r.mo_id for r in results if r is not None and r.mo_id is not None]
                claimed = await mo_store.claim_replies(
                    session, self.settings.operator_id, mo_ids, now
                )
        except BaseException:
            self._guards.restore(confirmed)
            if self._outcomes is not None:
                self._outcomes.give_back(outcomes)
            raise
        if outcomes and self._outcomes is not None:
            self._outcomes.written(waiting)
        if inline is not None and direct is not None:
            direct.committed()
        return [result for result in results if result is not None], claimed

    async def _isolated(self, session: AsyncSession, item: _Item, now: datetime) -> _Result:
        """One PDU in a savepoint of its own: its failure sinks it alone."""
        try:
            async with session.begin_nested():
                if is_receipt(item.pdu):
                    return (await self._receipts(session, [item], now))[0]
                return (await self._mos(session, [item], now))[0]
        except Exception as exc:
            op = self.settings.operator_id
            log.exception("%s: could not store a %s", op, item.pdu.command_id.name)
            return _Result(S.ESME_RX_T_APPN, "refused", error=("deliver_sm", str(exc)))

    async def _mos(self, session: AsyncSession, items: list[_Item], now: datetime) -> list[_Result]:
        """MOs and MO fragments, in the batch's transaction; one result per item, in order.

        The messages on their own (nearly all MOs) are stored together, in a fixed number of
        statements (``mo_store.store_whole_mos``); parts of concatenated MOs one by one.
        """
        parts = [read_mo(item.pdu) for item in items]
        alphabet = self.settings.default_alphabet
        whole = [i for i, part in enumerate(parts) if part.concat is None]
        results: list[_Result | None] = [None] * len(items)
        stored = await mo_store.store_whole_mos(
            session,
            operator_id=self.settings.operator_id,
            mos=[
                mo_store.WholeMo(parts[i], parts[i].text(alphabet), items[i].connection_id)
                for i in whole
            ],
            now=now,
            redelivery_window=timedelta(seconds=self.settings.mo_redelivery_seconds),
            handlers=self._handlers,
        )
        for i, one in zip(whole, stored, strict=True):
            results[i] = _mo_result(one)
        for i, item in enumerate(items):
            if results[i] is None:
                results[i] = await self._mo(session, item, now)
        return [result for result in results if result is not None]

    async def _mo(self, session: AsyncSession, item: _Item, now: datetime) -> _Result:
        op = self.settings.operator_id
        pdu = item.pdu
        part = read_mo(pdu)
        if part.concat is not None:
            stored = await mo_store.store_fragment(
                session,
                operator_id=op,
                part=part,
                now=now,
                default_alphabet=self.settings.default_alphabet,
                handlers=self._handlers,
            )
        else:
            stored = await mo_store.store_whole_mo(
                session,
                operator_id=op,
                part=part,
                text=part.text(self.settings.default_alphabet),
                connection_id=item.connection_id,
                now=now,
                redelivery_window=timedelta(seconds=self.settings.mo_redelivery_seconds),
                handlers=self._handlers,
            )
        return _mo_result(stored)

    async def _receipts(
        self, session: AsyncSession, items: list[_Item], now: datetime
    ) -> list[_Result]:
        """Delivery receipts, in the batch's transaction; one result per item, in order. The
        readable ones go to the intake together (services/dlr.receive_receipts)."""
        results: list[_Result] = []
        readable: list[IncomingReceipt] = []
        for item in items:
            result, receipt = self._receipt(item.pdu)
            results.append(result)
            if receipt is not None:
                readable.append(receipt)
        outcomes = await receive_receipts(session, readable, now=now)
        for receipt, outcome in zip(readable, outcomes, strict=True):
            if not outcome.matched:
                self._on_unmatched(receipt.operator_message_id)
        return results

    def _receipt(self, pdu: DeliverSm | DataSm) -> tuple[_Result, IncomingReceipt | None]:
        receipt = read_receipt(pdu, self.settings.dlr_id_format)
        if receipt is None:
            problem = ("receipt", f"unreadable receipt from {pdu.source_addr!r}")
            return _Result(S.ESME_ROK, "receipt_unreadable", error=problem), None
        incoming = IncomingReceipt(
            operator_id=self.settings.operator_id,
            operator_message_id=receipt.message_id,
            state=receipt.state,
            error_code=receipt.error_code,
            raw={"via": "smpp", "id": receipt.raw_id, "stat": receipt.stat},
        )
        return _Result(S.ESME_ROK, "receipt"), incoming

    async def housekeeping(self) -> None:
        """Expire stale MO parts and redelivery guards (run every few minutes)."""
        now = self._clock.now()
        async with self._sessions() as session, session.begin():
            parts, _guards = await mo_store.expire(
                session,
                operator_id=self.settings.operator_id,
                now=now,
                fragment_max_age=timedelta(seconds=self.settings.fragment_max_age_seconds),
                redelivery_window=timedelta(seconds=self.settings.mo_redelivery_seconds),
            )
        if parts:
            log.warning(
                "%s: dropped %d parts of concatenated MOs whose other parts never came",
                self.settings.operator_id,
                parts,
            )


def _mo_result(stored: mo_store.StoredMo) -> _Result:
    outcome = stored.outcome
    if stored.redelivery or (outcome is not None and outcome.duplicate):
        return _Result(S.ESME_ROK, "redelivery", stored.ack_guard_id)
    if outcome is None:
        return _Result(S.ESME_ROK, "fragment", stored.ack_guard_id)
    return _Result(
        S.ESME_ROK,
        "mo",
        stored.ack_guard_id,
        mo_id=outcome.mo_id,
        item_handled=outcome.item_handled,
    )


def _response(pdu: DeliverSm | DataSm, status: int) -> Response:
    if isinstance(pdu, DataSm):
        return DataSmResp(sequence_number=pdu.sequence_number, command_status=status)
    return DeliverSmResp(sequence_number=pdu.sequence_number, command_status=status)
