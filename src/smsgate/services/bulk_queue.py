"""Group commit for bulk sends: concurrent requests share transactions.

Every ``send_bulk.php`` request is one small transaction, and most of its cost is the
transaction, not the work: on SQLite each would take the database's single write lock in turn
(BEGIN IMMEDIATE, store/db.py), waiting in SQLite's busy handler, which polls in steps of up to
100 ms; on PostgreSQL each pays a commit. The queue hands the requests that arrive while a
transaction runs to the next one, together: one writer per process (per database), the whole
batch decided by ``services/bulk_decide.py`` with a fixed number of statements, one commit for
the lot. A request is still answered only after the transaction holding its message has
committed.

The statements run without the ORM where the database allows (``bulk_sqlite.py``: stdlib
sqlite3 on a thread of its own; ``bulk_postgres.py``: asyncpg), through the session otherwise
(``bulk_batch.py``; an in-memory SQLite database, which another connection could not see).

If a batch fails as a whole (a database error, a concurrent request with the same idempotency
key), its requests are retried one by one (``services/bulk.send_one``), so one request's
failure never becomes its neighbours' answer.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from smsgate.services.bulk import send_one
from smsgate.services.bulk_batch import accept_batch
from smsgate.services.bulk_model import BulkRequest, SendResult, count_result
from smsgate.services.bulk_postgres import PostgresBatches
from smsgate.services.bulk_sqlite import SqliteBatches

__all__ = ["AcceptQueue", "BatchStore", "SessionBatches", "accept_queue", "batch_store"]

log = logging.getLogger(__name__)

MAX_BATCH: Final = 200


@dataclass(slots=True)
class _Waiting:
    request: BulkRequest
    now: datetime
    answer: asyncio.Future[SendResult]


class BatchStore(Protocol):
    async def accept(
        self, requests: Sequence[BulkRequest], nows: Sequence[datetime]
    ) -> list[SendResult]:
        """Decide and commit one batch in one transaction."""

    async def release(self) -> None:
        """The writer is idle: give back what it holds between batches."""


class SessionBatches:
    """The batch through SQLAlchemy sessions (bulk_batch.py)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def accept(
        self, requests: Sequence[BulkRequest], nows: Sequence[datetime]
    ) -> list[SendResult]:
        async with self._sessions() as session, session.begin():
            return await accept_batch(session, requests, nows)

    async def release(self) -> None:
        return None


def batch_store(sessions: async_sessionmaker[AsyncSession]) -> BatchStore:
    """The fastest store the sessions' database allows."""
    engine = sessions.kw.get("bind")
    if not isinstance(engine, AsyncEngine):
        return SessionBatches(sessions)
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        assert url.database is not None
        return SqliteBatches(url.database)
    if url.get_backend_name() == "postgresql" and engine.dialect.driver == "asyncpg":
        return PostgresBatches(engine)
    return SessionBatches(sessions)


class AcceptQueue:
    """Accepts bulk sends in shared transactions; one per sessionmaker and event loop."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        max_batch: int = MAX_BATCH,
        store: BatchStore | None = None,
    ) -> None:
        self._sessions = sessions
        self._store = store or batch_store(sessions)
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
        # Requests that arrive while the store is released are still this writer's: ``send``
        # starts no other while it runs, so it looks again before it ends.
        while self._waiting:
            await self._drain()
            await asyncio.sleep(0)  # let requests already on their way join the burst
            if not self._waiting:
                await self._store.release()

    async def _drain(self) -> None:
        while self._waiting:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: len(batch)]
            try:
                results = await self._store.accept(
                    [w.request for w in batch], [w.now for w in batch]
                )
            except Exception:
                log.exception(
                    "a batch of %d bulk sends failed; sending them one by one", len(batch)
                )
                await self._one_by_one(batch)
                continue
            finally:
                self.batches += 1
            for waiting, result in zip(batch, results, strict=True):
                count_result(result, waiting.request.via)
                if not waiting.answer.done():
                    waiting.answer.set_result(result)

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
