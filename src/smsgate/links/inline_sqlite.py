"""A SQLAlchemy engine on SQLite whose driver calls complete at once, on the event loop.

Why: through aiosqlite every statement of a transaction is handed to aiosqlite's thread and
back, a turn of the event loop each; a receipts transaction of a dozen statements held the
link's write lock (and SQLite's) for 5-10 ms of wall time, while the MOs behind it waited
(``receiver.py``). Here the aiosqlite connection SQLAlchemy drives is a stand-in whose
coroutines run the stdlib ``sqlite3`` call at once and never suspend, so the same SQLAlchemy
code runs its transaction in one go, on the loop.

The connection never waits for SQLite's write lock (``busy_timeout`` 0, so it never blocks the
loop): when another connection holds it, ``BEGIN IMMEDIATE`` fails with "database is locked"
and the caller does the transaction the ordinary way. It never checkpoints the WAL either (a
checkpoint syncs the disk): ``mo_direct.SqliteDirect`` does, on its thread, counting the
commits it is told of. One connection (``StaticPool``): the caller runs one transaction at a
time, under the link's write lock.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.pool import StaticPool

from smsgate.store.db import make_engine, make_sessionmaker


class _Cursor:
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> _Cursor:
        return self

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Any = ()) -> _Cursor:
        self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> _Cursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def close(self) -> None:
        self._cursor.close()


class _Calls:
    """aiosqlite's queue of calls for its thread, as SQLAlchemy's adapter uses it (to set the
    isolation level): the call is made at once."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:
            if future is not None:
                future.set_exception(exc)
            return
        if future is not None:
            future.set_result(result)


class InlineConnection:
    """What SQLAlchemy's aiosqlite adapter (and ``store/row_sets.execute``) use of an
    ``aiosqlite.Connection``, on a stdlib connection, every call made at once."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection: sqlite3.Connection | None = connection
        self._conn = connection
        self._tx = _Calls(connection)

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    def cursor(self) -> _Cursor:
        return _Cursor(self._conn.cursor())

    async def execute(self, sql: str, parameters: Any = ()) -> _Cursor:
        return await self.cursor().execute(sql, parameters)

    async def _execute(self, function: Callable[..., Any], *args: Any) -> Any:
        return function(*args)

    async def commit(self) -> None:
        self._conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    async def close(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()

    def stop(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()


def inline_engine(path: str) -> AsyncEngine:
    """An engine on the SQLite file ``path`` (see the module docstring)."""

    async def connect() -> InlineConnection:
        return InlineConnection(sqlite3.connect(path, check_same_thread=False))

    engine = make_engine(f"sqlite+aiosqlite:///{path}", async_creator=connect, poolclass=StaticPool)

    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        # After store/db.py's own: never wait for the write lock, never checkpoint.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=0")
        cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    event.listen(engine.sync_engine, "connect", _pragmas)
    return engine


def inline_sessions(path: str) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(inline_engine(path))
