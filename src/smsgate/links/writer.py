"""Writing submit outcomes in batches: many submit_sm_resp per transaction.

A transaction per response would cap a link at the database's commit rate; instead outcomes
are buffered and a single background task writes whatever has gathered, one transaction per
batch, while the next responses keep arriving. A batch of receipts takes the outcomes
gathered so far into its own transaction (:meth:`ResultWriter.take`), before it looks for
their parts: most SMSCs send the receipt right after the response. An outcome not yet
written when the process dies leaves its MT ``submitting``, which the next owner marks
``unknown`` (submitter.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import BigInteger, Table, any_, bindparam, delete, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from smsgate.domain.clock import Clock
from smsgate.links import sqlite_batches
from smsgate.links.sqlite_batches import PartRow
from smsgate.links.state import LinkState
from smsgate.services.dlr import apply_early_receipts, notify_submit_outcomes
from smsgate.store.models import MtMessage, MtPart
from smsgate.store.row_sets import insert_rows

log = logging.getLogger(__name__)

MAX_BATCH: Final = 2000
MAX_EARLY_RECEIPTS: Final = 100_000
# Short: an accepted MT whose outcome a crash catches unwritten is `unknown` after the restart.
# No window waits on it (unlike receipts, answered after their commit: receiver.py): a submit's
# place in the window is free at its submit_sm_resp, and a batch of receipts takes the outcomes
# gathered so far (``take``).
GATHER_SECONDS: Final = 0.01
_CHUNK: Final = 500  # ids per IN (...) list
_WRITE_ATTEMPTS: Final = 5

_MT = cast(Table, MtMessage.__table__)
_PARTS = cast(Table, MtPart.__table__)
_FINAL_UPDATE = (
    update(_MT)
    .where(_MT.c.id == bindparam("b_id"), _MT.c.status == "submitting")
    .values(
        status=bindparam("b_status"),
        error_code=bindparam("b_error"),
        updated_at=bindparam("b_now"),
    )
)
# One array parameter: the same statement text (and prepared statement) for every batch.
_SUBMITTED_UPDATE = (
    update(_MT)
    .where(
        _MT.c.id == any_(bindparam("b_ids", type_=ARRAY(BigInteger))),
        _MT.c.status == "submitting",
    )
    .values(status="submitted", error_code="", updated_at=bindparam("b_now"))
)
_REQUEUE_UPDATE = (
    update(_MT)
    .where(_MT.c.id == bindparam("b_id"), _MT.c.status == "submitting")
    .values(
        status="queued",
        error_code=bindparam("b_error"),
        updated_at=bindparam("b_now"),
        next_attempt_at=bindparam("b_next"),
    )
)


@dataclass(frozen=True, slots=True)
class PartOutcome:
    part_no: int
    status: str  # submitted | failed | unknown
    message_id: str
    error: str


@dataclass(frozen=True, slots=True)
class MtOutcome:
    mt_id: int
    status: str  # submitted | failed | unknown | queued
    error: str
    parts: list[PartOutcome] = field(default_factory=list)
    next_attempt_at: datetime | None = None
    waiting_parts: tuple[int, ...] = ()
    """Parts still to send when the MT is queued again: kept as ``queued`` rows, so that a
    receipt for a part already sent cannot make the whole message look finished."""
    retried: bool = False  # an earlier attempt left rows for this MT's parts


class ResultWriter:
    def __init__(
        self,
        operator_id: str,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        lock: asyncio.Lock,
        state: LinkState,
    ) -> None:
        self._operator_id = operator_id
        self._sessions = sessions
        self._clock = clock
        self._lock = lock
        self._state = state
        self._buffer: list[MtOutcome] = []
        self._task: asyncio.Task[None] | None = None
        self._flushing = False
        self._urgent = False
        self._writing: asyncio.Task[None] | None = None  # a transaction of ours under way
        self._loop_sessions: async_sessionmaker[AsyncSession] | None = None
        self._loop_committed: Callable[[], None] = lambda: None
        # Ids of receipts this link's receiver stored before their part was known (reported
        # under the lock), oldest first: applied with the part, at once. Receipts that came
        # another way (HTTP intake, another process, before a restart) are the worker's
        # sweep's (services/dlr_sweep.py).
        self._early_receipts: dict[str, None] = {}
        self.batches = 0  # transactions written, for tests and benchmarks

    def receipt_unmatched(self, message_id: str) -> None:
        """The receiver stored a receipt for a part not yet known (called under the lock)."""
        self._early_receipts[message_id] = None
        if len(self._early_receipts) > MAX_EARLY_RECEIPTS:
            # Receipts of messages we never sent (or whose outcome is unknown) never match.
            del self._early_receipts[next(iter(self._early_receipts))]

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def add(self, outcome: MtOutcome) -> None:
        self._buffer.append(outcome)
        if outcome.status != "submitted":
            # Rare, and worth writing at once: a retry's time, a failure's callback.
            self._urgent = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def flush(self) -> None:
        """Return once everything added so far is written (or given up on)."""
        self._flushing = True
        try:
            while self._task is not None and not self._task.done():
                await asyncio.shield(self._task)
            if self._buffer:
                self._task = asyncio.get_running_loop().create_task(self._run())
                await asyncio.shield(self._task)
        finally:
            self._flushing = False

    async def settled(self) -> None:
        """Return once no write of ours is under way (call before taking the write lock:
        a write under way waits for it)."""
        while self._writing is not None and not self._writing.done():
            await asyncio.wait({self._writing})

    def take(self) -> list[MtOutcome]:
        """The outcomes gathered so far, for the caller's transaction (under the write lock,
        after :meth:`settled`): write them with :meth:`write_in`, then call :meth:`written`,
        or :meth:`give_back` when that transaction fails."""
        batch = self._buffer[:MAX_BATCH]
        del self._buffer[:MAX_BATCH]
        return batch

    def give_back(self, batch: list[MtOutcome]) -> None:
        if batch:
            self._buffer[:0] = batch
            if self._task is None or self._task.done():
                self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self._buffer:
            if len(self._buffer) < MAX_BATCH // 4 and not self._flushing and not self._urgent:
                # Let some milliseconds of responses gather: one transaction for many outcomes
                # instead of one each when responses trickle in. A batch of receipts usually
                # takes them before (``take``).
                await asyncio.sleep(GATHER_SECONDS)
            self._urgent = False
            batch = self._buffer[:MAX_BATCH]
            del self._buffer[:MAX_BATCH]
            if not batch:
                continue  # a batch of receipts took them meanwhile
            for attempt in range(1, _WRITE_ATTEMPTS + 1):
                try:
                    self._writing = asyncio.get_running_loop().create_task(self._write(batch))
                    await asyncio.shield(self._writing)
                    break
                except Exception as exc:
                    self._state.error("database", str(exc))
                    if attempt == _WRITE_ATTEMPTS:
                        # The MTs stay "submitting"; the next start marks them unknown.
                        log.exception(
                            "%s: could not record %d submit outcomes",
                            self._operator_id,
                            len(batch),
                        )
                        break
                    await asyncio.sleep(0.1 * 2**attempt)

    def write_on_loop(
        self, sessions: async_sessionmaker[AsyncSession], committed: Callable[[], None]
    ) -> None:
        """Write through ``sessions`` first (``inline_sqlite.py``: on the loop, never waiting
        for SQLite's write lock), the ordinary way when that fails; ``committed`` after each
        commit there."""
        self._loop_sessions = sessions
        self._loop_committed = committed

    async def _write(self, batch: list[MtOutcome]) -> None:
        async with self._lock:
            if self._loop_sessions is not None:
                try:
                    async with self._loop_sessions() as session, session.begin():
                        waiting = await self.write_in(session, batch)
                except Exception:
                    # Rolled back (SQLite's write lock was taken, most likely): the ordinary
                    # way below, which waits for it and reports a real failure.
                    log.debug(
                        "%s: outcomes not written on the loop", self._operator_id, exc_info=True
                    )
                else:
                    self._loop_committed()
                    self.written(waiting)
                    return
            async with self._sessions() as session, session.begin():
                waiting = await self.write_in(session, batch)
        self.written(waiting)

    def written(self, waiting: list[str]) -> None:
        """The transaction of :meth:`write_in` committed (``waiting``: what it returned)."""
        self.batches += 1
        for message_id in waiting:
            self._early_receipts.pop(message_id, None)

    async def write_in(self, session: AsyncSession, batch: list[MtOutcome]) -> list[str]:
        """Write ``batch`` in the caller's transaction (under the write lock); returns the ids
        of the early receipts it applied, for :meth:`written`."""
        if not batch:
            return []
        # submitted_at is when the outcome is written, within GATHER_SECONDS of the response.
        now = self._clock.now()
        op = self._operator_id
        parts: list[PartRow] = []
        submitted: list[int] = []
        settled: list[int] = []  # MTs whose outcome is the link's last word: reported
        finals: list[dict[str, Any]] = []
        requeued: list[dict[str, Any]] = []
        retried: list[int] = []
        message_ids: list[str] = []
        for outcome in batch:
            mt_id = outcome.mt_id
            if outcome.retried:
                retried.append(mt_id)
            for part_no in outcome.waiting_parts:
                parts.append((mt_id, part_no, None, "queued", "", False))
            for part in outcome.parts:
                status = part.status
                if status == "submitted" and part.message_id:
                    message_ids.append(part.message_id)
                message_id = part.message_id or None
                parts.append((mt_id, part.part_no, message_id, status, part.error[:32], True))
            if outcome.status == "submitted":
                submitted.append(mt_id)
                settled.append(mt_id)
            elif outcome.status == "queued":
                requeued.append(
                    {
                        "b_id": mt_id,
                        "b_error": outcome.error[:32],
                        "b_now": now,
                        "b_next": outcome.next_attempt_at or now,
                    }
                )
            else:
                finals.append(
                    {
                        "b_id": mt_id,
                        "b_status": outcome.status,
                        "b_error": outcome.error[:32],
                        "b_now": now,
                    }
                )
                settled.append(mt_id)
        # Core statements on the connection: the ORM's bulk paths cost more than the
        # database does at thousands of rows a second.
        connection = await session.connection()
        for chunk in _chunks(retried):
            # The rows that stood for the parts of this attempt until their outcome.
            await connection.execute(
                delete(_PARTS).where(_PARTS.c.mt_id.in_(chunk), _PARTS.c.status == "submitting")
            )
        sqlite = connection.dialect.name == "sqlite"
        if parts:
            if sqlite:
                await sqlite_batches.insert_parts(connection, op, parts, now)
            else:
                await _insert_parts(connection, op, parts, now)
        if submitted and sqlite:
            await sqlite_batches.mark_submitted(connection, submitted, now)
        if submitted and not sqlite:
            await connection.execute(_SUBMITTED_UPDATE, {"b_ids": submitted, "b_now": now})
        if finals:
            await connection.execute(_FINAL_UPDATE, finals)
        if requeued:
            await connection.execute(_REQUEUE_UPDATE, requeued)
        # The merchant hears "accepted", "failed" or "unknown" with the outcome itself
        # (docs/bulk.md, "DLR callbacks"), before any receipt that came early.
        await notify_submit_outcomes(session, settled, now=now)
        waiting = [m for m in message_ids if m in self._early_receipts]
        if waiting:
            await apply_early_receipts(session, op, waiting, now=now)
        return waiting


async def _insert_parts(
    connection: AsyncConnection, operator_id: str, parts: list[PartRow], now: datetime
) -> None:
    # One statement with one JSON parameter: executemany would have PostgreSQL run (and
    # maintain the indexes for) one execution per row.
    await insert_rows(
        connection,
        _PARTS,
        [
            {
                "mt_id": mt_id,
                "part_no": part_no,
                "operator_id": operator_id,
                "operator_message_id": message_id,
                "status": status,
                "error_code": error,
                "submitted_at": now if sent else None,
                "done_at": now if status == "failed" else None,
            }
            for mt_id, part_no, message_id, status, error, sent in parts
        ],
        columns=_PART_COLUMNS,
    )


_PART_COLUMNS: Final = (
    "mt_id",
    "part_no",
    "operator_id",
    "operator_message_id",
    "status",
    "error_code",
    "submitted_at",
    "done_at",
)


def _chunks(items: list[Any]) -> list[list[Any]]:
    return [items[start : start + _CHUNK] for start in range(0, len(items), _CHUNK)]
