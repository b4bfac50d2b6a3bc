"""The link's write lock, and on SQLite every write of the link under it.

SQLite has one writer at a time. A writer that finds the database locked waits in SQLite's
busy handler, which sleeps in steps growing to 100 ms and retries; meanwhile a writer that
comes later and happens to try while the lock is free takes it first. Under a steady stream
of MOs, receipts, claims and outcomes the link's own transactions starved one another this
way for hundreds of milliseconds (a claim waited up to 1.7 s at 300 MO/s). Queued on one
asyncio lock first, they take turns in order and never meet in the busy handler.

The receiver takes the lock for its receipt batches already (see ``receiver.py``) and then
opens its session, so the lock must let the task that holds it take it again:
:class:`TaskLock`. :func:`serialised_sessions` gives sessions that hold it for their life.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any, Literal, cast

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


class TaskLock(asyncio.Lock):
    """An asyncio lock that the task holding it may take again; it is free once released
    as many times as it was taken."""

    def __init__(self) -> None:
        super().__init__()
        self._owner: asyncio.Task[Any] | None = None
        self._depth = 0

    async def acquire(self) -> Literal[True]:
        task = asyncio.current_task()
        if task is not None and self._owner is task:
            self._depth += 1
            return True
        await super().acquire()
        self._owner, self._depth = task, 1
        return True

    def release(self) -> None:
        if self._depth > 1:
            self._depth -= 1
            return
        self._owner, self._depth = None, 0
        super().release()


class _SerialisedSession(AsyncSession):
    """A session that holds the link's write lock from ``async with`` to its end."""

    def __init__(self, *args: Any, write_lock: asyncio.Lock, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._write_lock = write_lock

    async def __aenter__(self) -> _SerialisedSession:
        await self._write_lock.acquire()
        return self

    async def __aexit__(
        self,
        type_: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            await super().__aexit__(type_, value, traceback)
        finally:
            self._write_lock.release()


def serialised_sessions(
    sessions: async_sessionmaker[AsyncSession], write_lock: asyncio.Lock
) -> async_sessionmaker[AsyncSession]:
    """Sessions like ``sessions`` that, on SQLite, each hold ``write_lock`` (a
    :class:`TaskLock`) while open; on PostgreSQL, ``sessions`` itself (its writers do not
    starve one another)."""
    bind = sessions.kw.get("bind")
    if bind is None or bind.dialect.name != "sqlite":
        return sessions
    serialised = async_sessionmaker(
        class_=_SerialisedSession, **{**sessions.kw, "write_lock": write_lock}
    )
    return cast(async_sessionmaker[AsyncSession], serialised)
