"""The link's MO transactions straight on the database driver: stdlib ``sqlite3`` (on the event
loop, or on a thread of their own when SQLite's write lock is taken), or a raw asyncpg
connection, without SQLAlchemy's session, pool and execution path.

Why: an MO batch of the usual kind (whole MOs to access-code services) is a few set-wise
statements (``services/mo.py``), and every one of them goes through ``store/row_sets.execute``.
Through SQLAlchemy and aiosqlite each statement cost a hand-over to aiosqlite's thread and
back, and the transaction (session, pool, ``BEGIN``, commit, reset) as much as several
statements again: about 2 ms of CPU and, worse, one turn of the event loop per step, so that a
batch took 10 ms of wall time while the SMPP sessions, the submitter and the writer took
their turns in between. The reply waited for all of it.

On PostgreSQL each statement is also a round trip to the server (0.25-0.3 ms on an idle
machine, twice that under load), whatever its work: a batch of the usual kind is BEGIN, three
statements and COMMIT. Its guards and its MOs (not routed yet) are inserted, and the short
numbers that route them read, in one (``mo_guards.py``); the revenue is booked with the first
draw of codes in one (``ledger.book_mo_revenues_and_insert``); the replies are inserted,
already claimed for the link, with the MOs' routes and outcomes in one (``services/mo.py``).

How: the very coroutines of the ordinary path run against :class:`DirectSession`, a stand-in
for the ``AsyncSession`` that offers only what ``row_sets.execute`` needs: the dialect, and

- on SQLite, the ``(call in thread, sqlite3 connection)`` pair that ``row_sets.execute`` takes
  from aiosqlite, with the call made at once: the whole transaction (``BEGIN IMMEDIATE`` to
  ``COMMIT``) runs in one go, without the coroutine ever suspending (:func:`_drive`), on the
  event loop or in one hand-over to the store's thread (:class:`SqliteDirect`);
- on PostgreSQL, ``exec_driver_sql`` on an asyncpg connection of the store's own (the
  statements are constant, so asyncpg prepares each once per connection).

Anything else the code asks of the session (an ORM statement: a redelivery, a duplicate, a
one-at-a-time handler, a ledger conflict) raises :class:`NotDirect`: the transaction is
rolled back and the caller does the batch the ordinary way. So the rules live in one place,
and this module only changes how the statements reach the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import weakref
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, TypeVar, cast

import asyncpg
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from smsgate.links.inline_sqlite import inline_sessions
from smsgate.store.db import SqliteWriteLockBusy, sqlite_write_transaction

log = logging.getLogger(__name__)
T = TypeVar("T")
Body = Callable[[AsyncSession], Coroutine[Any, Any, T]]


class NotDirect(Exception):
    """The batch needs more than the direct path offers: do it the ordinary way."""


class DirectSession:
    """What the MO path's set-wise statements use of an ``AsyncSession``, and nothing more."""

    def __init__(self, connection: DirectConnection) -> None:
        self._connection = connection

    async def connection(self) -> DirectConnection:
        return self._connection

    async def flush(self) -> None:
        return None  # nothing is ever pending: the ORM is not used here

    def __getattr__(self, name: str) -> Any:
        raise NotDirect(f"session.{name}")


class DirectConnection:
    """What ``store/row_sets.execute`` uses of an ``AsyncConnection``."""

    def __init__(
        self,
        dialect: Dialect,
        sqlite: sqlite3.Connection | None = None,
        postgres: asyncpg.Connection | None = None,
    ) -> None:
        self.dialect = dialect
        self._sqlite = sqlite
        self._postgres = postgres

    async def get_raw_connection(self) -> _Raw:
        if self._sqlite is None:
            raise NotDirect("raw connection")
        return _Raw(_Driver(self._sqlite))

    async def exec_driver_sql(self, sql: str, parameters: Sequence[Any]) -> _Result:
        if self._postgres is None:
            raise NotDirect("exec_driver_sql")
        return _Result([tuple(row) for row in await self._postgres.fetch(sql, *parameters)])

    def __getattr__(self, name: str) -> Any:
        raise NotDirect(f"connection.{name}")


class _Driver:
    """aiosqlite's connection as ``row_sets.execute`` reaches it, the call made at once (we
    are on the sqlite3 connection's own thread already)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    async def _execute(self, function: Callable[..., T], *args: Any) -> T:
        return function(*args)


class _Raw:
    def __init__(self, driver: _Driver) -> None:
        self.driver_connection = driver


class _Result:
    returns_rows = True

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self._rows = rows

    def all(self) -> list[tuple[Any, ...]]:
        return self._rows


def _drive(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends to its end, here and now."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    coroutine.close()
    raise NotDirect("the transaction waited for something")


class DirectStore:
    """Runs a transaction's coroutine on the direct path (see the module docstring)."""

    serialised = False
    """Whether its transactions take the link's write lock (SQLite: write_lock.py)."""

    @property
    def receipt_sessions(self) -> async_sessionmaker[AsyncSession] | None:
        """Sessions for the link's receipts transactions on the loop, if there are any
        (``inline_sqlite.py``); call :meth:`committed` after each commit."""
        return None

    def committed(self) -> None:
        return None

    async def run(self, body: Body[T], *, size: int = 1) -> T:
        """``body`` in one transaction (``size``: how many MOs it stores)."""
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


# A batch of at most this many MOs is stored on the event loop (about 0.3 ms an MO).
MAX_ON_LOOP: Final = 16
# Commits on the loop's connection between two WAL checkpoints (on the store's thread).
CHECKPOINT_EVERY: Final = 200


class SqliteDirect(DirectStore):
    """Transactions on one SQLite file, one after another.

    A small batch runs on the event loop itself when SQLite's write lock is free at that
    moment: its statements run in C and cost less than handing the batch to a thread and back
    (and waiting there for the interpreter lock while the loop is busy). The loop's connection
    never waits for the lock (``busy_timeout`` 0) and never checkpoints the WAL (a checkpoint
    syncs the disk): when another connection holds the lock, or the batch is large, the batch
    runs on the store's thread, whose connection waits; the checkpoints run there too, every
    :data:`CHECKPOINT_EVERY` commits. (services/check_stores.py does the same for code checks.)
    """

    serialised = True

    def __init__(self, path: str, dialect: Dialect) -> None:
        self._path = path
        self._dialect = dialect
        self._loop_db: sqlite3.Connection | None = None  # opened, used and closed on the loop
        self._commits = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mo-direct")
        self._db: list[sqlite3.Connection] = []  # opened on the thread
        self._finalizer = weakref.finalize(self, _close_sqlite, self._db, self._executor)
        self._receipt_sessions: async_sessionmaker[AsyncSession] | None = None

    @property
    def receipt_sessions(self) -> async_sessionmaker[AsyncSession]:
        if self._receipt_sessions is None:
            self._receipt_sessions = inline_sessions(self._path)
        return self._receipt_sessions

    def committed(self) -> None:
        """A transaction committed on a connection of the loop: checkpoint now and then."""
        self._commits += 1
        if self._commits >= CHECKPOINT_EVERY:
            self._commits = 0
            # (A link closing has shut the thread down: the next start checkpoints.)
            with contextlib.suppress(RuntimeError):
                self._executor.submit(self._checkpoint)

    async def run(self, body: Body[T], *, size: int = 1) -> T:
        if size <= MAX_ON_LOOP:
            db = self._loop_db or self._connect_loop()
            try:
                result = self._transaction(db, body)
            except SqliteWriteLockBusy:
                pass
            else:
                self.committed()
                return result
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._on_thread, body)

    async def aclose(self) -> None:
        if self._loop_db is not None:
            self._loop_db.close()
            self._loop_db = None
        if self._receipt_sessions is not None:
            engine = self._receipt_sessions.kw["bind"]
            self._receipt_sessions = None
            await engine.dispose()
        self._finalizer()

    def _connect(self, *pragmas: str) -> sqlite3.Connection:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        # The pragmas store/db.py gives the gateway's own connections; BEGIN is ours.
        for pragma in (
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=NORMAL",
            "PRAGMA foreign_keys=ON",
            *pragmas,
        ):
            db.execute(pragma)
        return db

    def _connect_loop(self) -> sqlite3.Connection:
        self._loop_db = self._connect("PRAGMA busy_timeout=0", "PRAGMA wal_autocheckpoint=0")
        return self._loop_db

    def _thread_db(self) -> sqlite3.Connection:
        if not self._db:
            self._db.append(self._connect("PRAGMA busy_timeout=30000"))
        return self._db[0]

    def _on_thread(self, body: Body[T]) -> T:
        return self._transaction(self._thread_db(), body)

    def _checkpoint(self) -> None:
        try:
            self._thread_db().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error:
            log.warning("WAL checkpoint failed", exc_info=True)

    def _transaction(self, db: sqlite3.Connection, body: Body[T]) -> T:
        """``body`` in one transaction on ``db``; SqliteWriteLockBusy (nothing written) when
        ``db`` gave up waiting for the write lock."""
        with sqlite_write_transaction(db):
            return _drive(body(_as_session(DirectConnection(self._dialect, sqlite=db))))


def _close_sqlite(connections: list[sqlite3.Connection], executor: ThreadPoolExecutor) -> None:
    # On the thread that used them; then the thread ends. (At interpreter exit the executor
    # takes no more work: the connections close with the process.)
    with contextlib.suppress(RuntimeError):
        executor.submit(_close_all, connections)
    executor.shutdown(wait=False)


def _close_all(connections: list[sqlite3.Connection]) -> None:
    for db in connections:
        db.close()
    connections.clear()


class PostgresDirect(DirectStore):
    """Transactions on an asyncpg connection of the store's own, one after another."""

    def __init__(self, dsn: str, dialect: Dialect) -> None:
        self._dsn = dsn
        self._dialect = dialect
        self._connection: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()

    async def run(self, body: Body[T], *, size: int = 1) -> T:
        async with self._lock:
            connection = self._connection
            if connection is None or connection.is_closed():
                connection = self._connection = await asyncpg.connect(self._dsn)
            async with connection.transaction():
                return await body(_as_session(DirectConnection(self._dialect, postgres=connection)))

    async def aclose(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await connection.close()


def _as_session(connection: DirectConnection) -> AsyncSession:
    return cast(AsyncSession, DirectSession(connection))


def direct_store(sessions_bind: Any) -> DirectStore | None:
    """The direct store for the database of ``sessions_bind`` (an ``AsyncEngine``), or None
    when there is none to use (an in-memory SQLite database, another dialect)."""
    url = getattr(sessions_bind, "url", None)
    if url is None:
        return None
    dialect = sessions_bind.dialect
    backend = url.get_backend_name()
    if backend == "sqlite":
        database = url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
        return SqliteDirect(database, dialect)
    if backend == "postgresql":
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        return PostgresDirect(dsn, dialect)
    return None


__all__: Final = [
    "DirectSession",
    "DirectStore",
    "NotDirect",
    "PostgresDirect",
    "SqliteDirect",
    "direct_store",
]
