"""Where batches of code checks are decided: one transaction per batch, written set-wise.

- SQLite: stdlib ``sqlite3`` on connections of its own, so the statements (one lookup per
  service through ``json_each``, ``executemany`` for the updates and the check rows) run in
  C. ``BEGIN IMMEDIATE`` takes SQLite's one write lock before the lookup, so what the batch
  reads no other process can change before it commits. A batch runs on the event loop when
  the lock is free at once, and otherwise on a thread of the store's own that waits for it
  (:class:`SqliteCheckStore`); that thread queues this process's batches in order instead
  of in SQLite's busy handler, which sleeps in steps of up to 100 ms. WAL checkpoints run
  on a thread of their own (:class:`Checkpointer`).
- PostgreSQL: a small asyncpg pool of the checker's own (the statements are prepared once
  per connection by asyncpg's cache), optimistic (:class:`PostgresCheckStore`): the batch's
  codes are read without locks, and each use is written only if its code is still as read,
  together with the check rows, in one statement through ``unnest`` of arrays: two round
  trips a batch, whatever its size, one batch at a time. The checks of a code
  that another process used in between are decided again with the codes read
  ``FOR UPDATE``, in the order of their ids (so two processes cannot deadlock).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple, Protocol

import asyncpg
from sqlalchemy import URL

from smsgate.services.check_batch import (
    CHECK_COLUMNS,
    CheckResult,
    PendingCheck,
    StoredCode,
    check_row,
    decide,
    lookups,
    stored_code,
)
from smsgate.store.db import SqliteWriteLockBusy, sqlite_write_transaction


class ServiceRow(NamedTuple):
    id: int
    merchant_id: int
    type: str
    keyword: str
    status: str
    ip_allowlist: list[Any] | None
    settings: dict[str, Any] | None
    signing_secret: str


_SERVICE: Final = (
    "SELECT id, merchant_id, type, keyword, status, ip_allowlist, settings, signing_secret"
    " FROM services WHERE id = {}"
)


def _service_row(row: Sequence[Any] | None) -> ServiceRow | None:
    if row is None:
        return None
    allowlist, settings = (None if text is None else json.loads(text) for text in row[5:7])
    return ServiceRow(row[0], row[1], row[2], row[3], row[4], allowlist, settings, row[7])


log = logging.getLogger(__name__)


class CheckStore(Protocol):
    # How many batches may be decided at once (SQLite has one writer).
    batches_in_flight: int

    async def run(self, batch: list[PendingCheck]) -> list[CheckResult]: ...

    async def service(self, service_id: int) -> ServiceRow | None:
        """The service's row, read on the store's own connection: on SQLite a plain read
        (the gateway's engine would take the write lock for it, and queue behind batches)."""

    async def start(self) -> None:
        """Open what the first batch needs (optional: ``run`` opens it too)."""

    async def aclose(self) -> None: ...


def make_check_store(url: URL) -> CheckStore:
    if url.get_backend_name() == "sqlite":
        return SqliteCheckStore(url)
    return PostgresCheckStore(url)


# -- SQLite --------------------------------------------------------------------------------------

_SQLITE_FIND: Final = (
    "SELECT id, code, kind, issued_at, valid_until, lifetime_until, first_used_at, uses_left,"
    " uses_count, period_seconds, status FROM access_codes "
    "WHERE service_id = ? AND code IN (SELECT value FROM json_each(?))"
)
_SQLITE_USE: Final = (
    "UPDATE access_codes SET uses_count = ?, first_used_at = ?, valid_until = ?, "
    "uses_left = ?, status = ? WHERE id = ?"
)
_SQLITE_RECORD: Final = (
    "INSERT INTO code_checks (service_id, code_id, code_given, at, requester_ip, user_ip,"
    " answer, via) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def sqlite_time(when: datetime | None) -> str | None:
    """SQLAlchemy's storage format of store/types.UTCDateTime on SQLite: naive UTC, the
    microseconds always written (times compare as text there)."""
    if when is None:
        return None
    if when.tzinfo is not UTC:
        when = when.astimezone(UTC)
    return when.isoformat(" ", "microseconds")[:26]  # without its "+00:00"


def sqlite_parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(value + "+00:00")


# About SQLite's own auto-checkpoint (1,000 pages): a check writes two to three pages.
CHECKPOINT_EVERY_CHECKS: Final = 400


class Checkpointer:
    """Copies the write-ahead log back into the database file, on a thread and a connection
    of its own, when asked: a checkpoint syncs the file to disk, which would otherwise stall
    the batch whose commit happened to start it (SQLite's auto-checkpoint, here turned off
    on the checks' connection). ``PASSIVE``: it never holds up a writer."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="code-checks-wal", daemon=True)
        self._thread.start()

    def request(self) -> None:
        self._wake.set()

    def close(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        db = sqlite3.connect(self._path, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=30000")
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopping:
                    return
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    log.warning("WAL checkpoint failed", exc_info=True)
        finally:
            db.close()


# A batch at most this large is decided on the event loop (about 50 µs a check: a few ms).
MAX_ON_LOOP: Final = 64


class SqliteCheckStore:
    """The batches of one process, one after another.

    A batch runs on the event loop itself when SQLite's write lock is free at that moment: a
    batch is a few statements in C and costs less than handing it to a thread and back
    (measured: 5,100 checks/s on the loop against 4,000 through the thread). The loop's
    connection never waits for the lock (``busy_timeout`` 0): when another connection (another
    gateway process, or this one's engine) holds it, or the batch is large, the batch runs on
    the store's thread instead, whose connection waits for the lock. A WAL commit does not sync
    the disk (``synchronous=NORMAL``) and checkpoints run on a thread of their own, so once
    the lock is taken nothing in the batch waits for I/O.
    """

    batches_in_flight = 1

    def __init__(self, url: URL) -> None:
        if not url.database or url.database == ":memory:":
            raise ValueError("code checks need a SQLite file shared with the gateway")
        self._path = url.database
        self._loop_db: sqlite3.Connection | None = None  # opened, used and closed on the loop
        self._db: sqlite3.Connection | None = None  # opened, used and closed on the thread
        self._checkpointer: Checkpointer | None = None
        self._checks_since_checkpoint = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="code-checks")

    async def run(self, batch: list[PendingCheck]) -> list[CheckResult]:
        if len(batch) <= MAX_ON_LOOP:
            try:
                return self._transaction(self._loop_db or self._connect_loop(), batch)
            except SqliteWriteLockBusy:
                pass
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._on_thread, batch)

    async def service(self, service_id: int) -> ServiceRow | None:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._service, service_id)

    async def start(self) -> None:
        if self._loop_db is None:
            self._connect_loop()

    def _service(self, service_id: int) -> ServiceRow | None:
        db = self._db or self._connect_thread()
        return _service_row(db.execute(_SERVICE.format("?"), (service_id,)).fetchone())

    async def aclose(self) -> None:
        if self._loop_db is not None:
            self._loop_db.close()
            self._loop_db = None
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=True)

    def _connect(self, busy_timeout_ms: int) -> sqlite3.Connection:
        # The pragmas store/db.py gives the gateway's own connections; BEGIN is ours.
        db = sqlite3.connect(self._path, isolation_level=None, cached_statements=16)
        for pragma in (
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=NORMAL",
            f"PRAGMA busy_timeout={busy_timeout_ms}",
            "PRAGMA foreign_keys=ON",
            "PRAGMA wal_autocheckpoint=0",  # the checkpointer's work
        ):
            db.execute(pragma)
        if self._checkpointer is None:
            self._checkpointer = Checkpointer(self._path)
        return db

    def _connect_loop(self) -> sqlite3.Connection:
        self._loop_db = self._connect(0)
        return self._loop_db

    def _connect_thread(self) -> sqlite3.Connection:
        self._db = self._connect(30_000)
        return self._db

    def _close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None
        if self._db is not None:
            self._db.close()
            self._db = None

    def _committed(self, checks: int) -> None:
        self._checks_since_checkpoint += checks
        if self._checks_since_checkpoint >= CHECKPOINT_EVERY_CHECKS and self._checkpointer:
            self._checks_since_checkpoint = 0
            self._checkpointer.request()

    def _on_thread(self, batch: list[PendingCheck]) -> list[CheckResult]:
        return self._transaction(self._db or self._connect_thread(), batch)

    def _transaction(self, db: sqlite3.Connection, batch: list[PendingCheck]) -> list[CheckResult]:
        """One batch in one transaction; SqliteWriteLockBusy (nothing written) when ``db`` gave
        up waiting for the write lock."""
        with sqlite_write_transaction(db):
            found: dict[tuple[int, str], StoredCode] = {}
            for service_id, codes in lookups(batch).items():
                for row in db.execute(_SQLITE_FIND, (service_id, json.dumps(codes))):
                    found[(service_id, row[1])] = stored_code(row, sqlite_parse_time)
            results = decide(batch, found)
            used = [stored.written() for stored in found.values() if stored.used]
            if used:
                db.executemany(
                    _SQLITE_USE,
                    [
                        (count, sqlite_time(first), sqlite_time(until), left, status, code_id)
                        for count, first, until, left, status, code_id in used
                    ],
                )
            db.executemany(
                _SQLITE_RECORD,
                [check_row(c, r, sqlite_time) for c, r in zip(batch, results, strict=True)],
            )
        self._committed(len(batch))
        return results


# -- PostgreSQL ----------------------------------------------------------------------------------

# The codes as they are now, not locked: the optimistic path (PostgresCheckStore.run).
_PG_READ: Final = (
    "SELECT c.id, c.code, c.kind, c.issued_at, c.valid_until, c.lifetime_until,"
    " c.first_used_at, c.uses_left, c.uses_count, c.period_seconds, c.status, c.service_id"
    " FROM access_codes AS c "
    "JOIN unnest($1::bigint[], $2::text[]) AS wanted(service_id, code) "
    "ON c.service_id = wanted.service_id AND c.code = wanted.code"
)
_PG_FIND: Final = _PG_READ + " ORDER BY c.id FOR UPDATE OF c"
# The uses, each only if its code is still as it was read (its count of uses and its status:
# every change of a code counts a use or sets its status), and the check rows but those of
# a code whose use was refused, in one statement: a data-modifying CTE runs to completion
# whether or not the main statement reads it, and the insert sees what the update returned.
# Gives the ids of the codes used.
_PG_USE_IF_UNCHANGED_AND_RECORD: Final = (
    "WITH wanted AS ("
    " SELECT * FROM unnest($1::int[], $2::timestamptz[], $3::timestamptz[], $4::int[],"
    " $5::text[], $6::bigint[], $7::int[], $8::text[])"
    " AS u(uses_count, first_used_at, valid_until, uses_left, status, id, seen_uses,"
    " seen_status)), "
    "used AS ("
    " UPDATE access_codes AS c SET uses_count = w.uses_count, first_used_at = w.first_used_at,"
    " valid_until = w.valid_until, uses_left = w.uses_left, status = w.status"
    " FROM wanted AS w"
    " WHERE c.id = w.id AND c.uses_count = w.seen_uses AND c.status = w.seen_status"
    " RETURNING c.id), "
    "recorded AS ("
    " INSERT INTO code_checks (service_id, code_id, code_given, at, requester_ip, user_ip,"
    " answer, via)"
    " SELECT r.service_id, r.code_id, r.code_given, r.at, r.requester_ip, r.user_ip, r.answer,"
    " r.via FROM unnest($9::bigint[], $10::bigint[], $11::text[], $12::timestamptz[],"
    " $13::text[], $14::text[], $15::text[], $16::text[])"
    " AS r(service_id, code_id, code_given, at, requester_ip, user_ip, answer, via)"
    " WHERE r.code_id IS NULL OR r.code_id NOT IN (SELECT id FROM wanted)"
    " OR r.code_id IN (SELECT id FROM used)) "
    "SELECT id FROM used"
)
# Under the locks of _PG_FIND: the uses and the check rows, unconditionally.
_PG_USE_AND_RECORD: Final = (
    "WITH used AS ("
    " UPDATE access_codes AS c SET uses_count = u.uses_count, first_used_at = u.first_used_at,"
    " valid_until = u.valid_until, uses_left = u.uses_left, status = u.status"
    " FROM unnest($1::int[], $2::timestamptz[], $3::timestamptz[], $4::int[], $5::text[],"
    " $6::bigint[]) AS u(uses_count, first_used_at, valid_until, uses_left, status, id)"
    " WHERE c.id = u.id) "
    "INSERT INTO code_checks (service_id, code_id, code_given, at, requester_ip, user_ip,"
    " answer, via) "
    "SELECT * FROM unnest($7::bigint[], $8::bigint[], $9::text[], $10::timestamptz[],"
    " $11::text[], $12::text[], $13::text[], $14::text[])"
)
_PG_RECORD: Final = (
    "INSERT INTO code_checks (service_id, code_id, code_given, at, requester_ip, user_ip,"
    " answer, via) "
    "SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::timestamptz[],"
    " $5::text[], $6::text[], $7::text[], $8::text[])"
)
# One batch at a time: the checks that arrive while it waits for the server form the next,
# larger one. With three at once the batches were a third the size and each check cost the
# server and the gateway about half as much again (bench/check_code.py: 0.15 against 0.08 ms
# of PostgreSQL's CPU a check; docs/benchmarks.md). The second connection serves the
# service reads, which must not wait behind a batch.
PG_BATCHES_IN_FLIGHT: Final = 1
PG_POOL_SIZE: Final = 2


def _same(when: datetime) -> datetime:
    return when


def _pg_time(value: Any) -> datetime | None:
    return value if value is None else value.astimezone(UTC)


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows turned into one list per column (the arrays ``unnest`` takes)."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]


class PostgresCheckStore:
    """Batches decided optimistically: the codes are read without locks, the batch decided,
    and each use written only if its code is still as read, with the check rows, in one
    statement (two round trips a batch, no transaction to open and commit, no row locked
    for the read). The checks of a code that another gateway process used in between are
    not recorded by that statement; they are decided again, under ``FOR UPDATE`` locks.
    Uses are exact either way: a use is written only over the state it was decided on."""

    batches_in_flight = PG_BATCHES_IN_FLIGHT

    def __init__(self, url: URL) -> None:
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def run(self, batch: list[PendingCheck]) -> list[CheckResult]:
        pool = self._pool or await self._open()
        wanted = lookups(batch)
        async with pool.acquire() as conn:
            if not wanted:  # nothing to look up or use: the check rows alone, in autocommit
                results = decide(batch, {})
                rows = [check_row(c, r, _same) for c, r in zip(batch, results, strict=True)]
                await conn.execute(_PG_RECORD, *_columns(rows, len(CHECK_COLUMNS)))
                return results
            found = await self._read(conn, wanted, _PG_READ)
            seen = [(stored.state.uses_count, stored.status) for stored in found.values()]
            results = decide(batch, found)
            used = [
                (*stored.written(), uses, status)
                for stored, (uses, status) in zip(found.values(), seen, strict=True)
                if stored.used
            ]
            rows = [check_row(c, r, _same) for c, r in zip(batch, results, strict=True)]
            if not used:
                await conn.execute(_PG_RECORD, *_columns(rows, len(CHECK_COLUMNS)))
                return results
            won = await conn.fetch(
                _PG_USE_IF_UNCHANGED_AND_RECORD,
                *_columns(used, 8),
                *_columns(rows, len(CHECK_COLUMNS)),
            )
            lost = {row[5] for row in used} - {row[0] for row in won}
            if not lost:
                return results
            again = [i for i, result in enumerate(results) if result.code_id in lost]
            decided = await self._run_locked(conn, [batch[i] for i in again])
        for i, result in zip(again, decided, strict=True):
            results[i] = result
        return results

    async def _read(
        self, conn: asyncpg.Connection, wanted: dict[int, list[str]], statement: str
    ) -> dict[tuple[int, str], StoredCode]:
        service_ids = [sid for sid, codes in wanted.items() for _ in codes]
        codes = [code for some in wanted.values() for code in some]
        found: dict[tuple[int, str], StoredCode] = {}
        for row in await conn.fetch(statement, service_ids, codes):
            found[(row[11], row[1])] = stored_code(row, _pg_time)
        return found

    async def _run_locked(
        self, conn: asyncpg.Connection, batch: list[PendingCheck]
    ) -> list[CheckResult]:
        """``batch`` decided under locks on its codes (in the order of their ids, so that two
        processes locking overlapping batches cannot deadlock), in one transaction."""
        async with conn.transaction():
            found = await self._read(conn, lookups(batch), _PG_FIND)
            results = decide(batch, found)
            used = [stored.written() for stored in found.values() if stored.used]
            rows = [check_row(c, r, _same) for c, r in zip(batch, results, strict=True)]
            await conn.execute(
                _PG_USE_AND_RECORD, *_columns(used, 6), *_columns(rows, len(CHECK_COLUMNS))
            )
        return results

    async def start(self) -> None:
        if self._pool is None:
            await self._open()

    async def service(self, service_id: int) -> ServiceRow | None:
        pool = self._pool or await self._open()
        async with pool.acquire() as conn:
            return _service_row(await conn.fetchrow(_SERVICE.format("$1"), service_id))

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _open(self) -> asyncpg.Pool:
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=PG_POOL_SIZE)
            return self._pool
