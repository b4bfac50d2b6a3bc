"""Group commit for bulk sends: concurrent requests share transactions.

Every ``send_bulk.php`` request is one small transaction, and most of its cost is the
transaction, not the work: on SQLite each would take the database's single write lock in turn
(BEGIN IMMEDIATE, store/db.py), waiting in SQLite's busy handler, which polls in steps of up to
100 ms; on PostgreSQL each pays a commit. The queue hands the requests that arrive while a
transaction runs to the next one, together: one writer per process (per database), the whole
batch decided by ``services/bulk_batch.accept_batch`` with a fixed number of statements, one
commit for the lot. A request is still answered only after the transaction holding its
message has committed.

If a batch fails as a whole (a database error, a concurrent request with the same idempotency
key), its requests are retried one by one (``services/bulk.send_one``), so one request's
failure never becomes its neighbours' answer.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from smsgate.services.bulk import BulkRequest, SendResult, count_result, send_one
from smsgate.services.bulk_batch import accept_batch

__all__ = ["AcceptQueue", "accept_queue"]

log = logging.getLogger(__name__)

MAX_BATCH: Final = 200


@dataclass(slots=True)
class _Waiting:
    request: BulkRequest
    now: datetime
    answer: asyncio.Future[SendResult]


class AcceptQueue:
    """Accepts bulk sends in shared transactions; one per sessionmaker and event loop."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, max_batch: int = MAX_BATCH
    ) -> None:
        self._sessions = sessions
        self._max_batch = max_batch
        self._waiting: list[_Waiting] = []
        self._writer: asyncio.Task[None] | None = None
        self.batches = 0  # transactions run, for tests and benchmarks

    async def send(self, request: BulkRequest, *, now: datetime) -> SendResult:
        """Accept or refuse one message; returns once its transaction has committed."""
        answer: asyncio.Future[SendResult] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(request, now, answer))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return await answer

    async def send_all(self, requests: list[BulkRequest], *, now: datetime) -> list[SendResult]:
        return list(await asyncio.gather(*(self.send(r, now=now) for r in requests)))

    async def _write(self) -> None:
        while self._waiting:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: len(batch)]
            try:
                results = await self._batch(batch)
            except Exception:
                log.exception(
                    "a batch of %d bulk sends failed; sending them one by one", len(batch)
                )
                await self._one_by_one(batch)
                continue
            finally:
                self.batches += 1
            for waiting, result in zip(batch, results, strict=True):
                if not waiting.answer.done():
                    waiting.answer.set_result(result)

    async def _batch(self, batch: list[_Waiting]) -> list[SendResult]:
        async with self._sessions() as session, session.begin():
            results = await accept_batch(
                session, [w.request for w in batch], [w.now for w in batch]
            )
        for waiting, result in zip(batch, results, strict=True):
            count_result(result, waiting.request.via)
        return results

    async def _one_by_one(self, batch: list[_Waiting]) -> None:
        for waiting in batch:
            try:
                result = await send_one(self._sessions, waiting.request, now=waiting.now)
            except Exception as error:
                if not waiting.answer.done():
                    waiting.answer.set_exception(error)
                continue
            if not waiting.answer.done():
                waiting.answer.set_result(result)


_QUEUES: weakref.WeakKeyDictionary[
    async_sessionmaker[AsyncSession], dict[asyncio.AbstractEventLoop, AcceptQueue]
] = weakref.WeakKeyDictionary()


def accept_queue(sessions: async_sessionmaker[AsyncSession]) -> AcceptQueue:
    """The queue of these sessions in the running event loop."""
    loop = asyncio.get_running_loop()
    by_loop = _QUEUES.setdefault(sessions, {})
    queue = by_loop.get(loop)
    if queue is None:
        for stale in [other for other in by_loop if other.is_closed()]:
            del by_loop[stale]
        queue = by_loop[loop] = AcceptQueue(sessions)
    return queue
