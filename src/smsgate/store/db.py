"""Engines and sessions: one code path for SQLite (WAL) and PostgreSQL (asyncpg)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry


def sqlite_lock_busy(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite saying that another connection holds the lock it needs (a
    connection with ``busy_timeout`` 0 gets this at once instead of waiting), raised by the
    driver or wrapped by SQLAlchemy."""
    cause = getattr(exc, "orig", None) or exc
    return isinstance(cause, sqlite3.OperationalError) and (
        getattr(cause, "sqlite_errorcode", 0) & 0xFF
    ) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class SqliteWriteLockBusy(Exception):
    """Another connection holds SQLite's write lock and this one would not wait for it."""


@contextmanager
def sqlite_write_transaction(db: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` on a stdlib connection (autocommit mode), rolled back
    on any error; :class:`SqliteWriteLockBusy` (nothing written) when ``db`` gave up waiting
    for the write lock."""
    try:
        db.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if sqlite_lock_busy(exc):
            raise SqliteWriteLockBusy from exc
        raise
    try:
        yield
        db.execute("COMMIT")
    except BaseException as exc:
        if db.in_transaction:
            db.execute("ROLLBACK")
        if sqlite_lock_busy(exc):
            raise SqliteWriteLockBusy from exc
        raise


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # WAL lets readers work while one writer commits; busy_timeout makes a second writer
    # wait for the lock instead of failing at once; synchronous=NORMAL is durable in WAL
    # against a process crash (only an OS crash can lose the last commits).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


# The execution option that marks a connection's transactions as reads (make_read_sessionmaker).
READ_ONLY: Final = "smsgate_read_only"


def _sqlite_begin(conn: Any) -> None:
    # A deferred transaction that reads, then writes, can fail with "database is locked"
    # without waiting; taking the write lock at BEGIN makes writers queue up behind
    # busy_timeout instead. A read session's transaction is deferred: in WAL it reads a
    # snapshot and never waits for the write lock, and query_only makes a write in it fail
    # at once rather than succeed or fail by the timing of other writers.
    reading = bool(conn.get_execution_options().get(READ_ONLY, False))
    info = conn.connection.info  # lives as long as the pooled DBAPI connection
    if info.get("query_only", False) != reading:
        conn.exec_driver_sql(f"PRAGMA query_only={int(reading)}")
        info["query_only"] = reading
    conn.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    if is_sqlite(url):
        engine = create_async_engine(url, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        # Take over BEGIN from the driver so it can be IMMEDIATE (SQLAlchemy docs, "Serializable
        # isolation / Savepoints / Transactional DDL" for pysqlite).
        event.listen(
            engine.sync_engine,
            "connect",
            lambda dbapi_conn, _rec: setattr(dbapi_conn, "isolation_level", None),
        )
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_size", 20)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def make_read_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for reading only, on ``engine``'s pool: on SQLite their transactions do not
    take the write lock (so a read never queues behind writers) and refuse to write; on
    PostgreSQL they are ``READ ONLY`` transactions."""
    options: dict[str, Any] = {READ_ONLY: True}
    if engine.dialect.name == "postgresql":
        options["postgresql_readonly"] = True
    return async_sessionmaker(engine.execution_options(**options), expire_on_commit=False)
