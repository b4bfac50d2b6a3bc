"""One owner per bind: which process of the gateway runs the link of an operator.

An SMSC usually allows one bind per account, and two processes submitting the same queue
would fight over it. So a process runs an operator's link only while it holds that
operator's lock:

- PostgreSQL: a session advisory lock (``pg_try_advisory_lock``) per operator, held on a
  connection kept for the purpose. If the process dies, the server drops the connection and
  the lock with it, and another process takes the link over at its next look. If the
  connection fails, the lock is gone too: the link stops at once (``lost``).
- SQLite: one process owns every link, by an exclusive ``flock`` on ``<database>.links.lock``
  beside the database file (SQLite is one machine's database, so a file lock is enough).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
from typing import IO, Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)


class Ownership(Protocol):
    async def acquire(self, operator_id: str) -> bool:
        """Take the operator if nobody holds it; True when this process owns it now."""

    async def release(self, operator_id: str) -> None: ...

    async def lost(self) -> list[str]:
        """Operators this process owned and no longer does (forget them)."""

    async def close(self) -> None: ...


def advisory_key(operator_id: str) -> int:
    """A stable signed 64-bit key for pg_advisory_lock, from the operator id."""
    digest = hashlib.sha256(b"smsgate-link:" + operator_id.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresOwnership:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._held: dict[str, AsyncConnection] = {}

    async def acquire(self, operator_id: str) -> bool:
        if operator_id in self._held:
            return True
        connection = await self._engine.connect()
        try:
            got = (
                await connection.execute(
                    text("SELECT pg_try_advisory_lock(:key)"), {"key": advisory_key(operator_id)}
                )
            ).scalar_one()
            await connection.commit()
        except BaseException:
            await connection.close()
            raise
        if not got:
            await connection.close()
            return False
        self._held[operator_id] = connection
        return True

    async def release(self, operator_id: str) -> None:
        connection = self._held.pop(operator_id, None)
        if connection is None:
            return
        with contextlib.suppress(Exception):
            await connection.execute(
                text("SELECT pg_advisory_unlock(:key)"), {"key": advisory_key(operator_id)}
            )
            await connection.commit()
        with contextlib.suppress(Exception):
            await connection.close()

    async def lost(self) -> list[str]:
        gone: list[str] = []
        for operator_id, connection in list(self._held.items()):
            try:
                await connection.execute(text("SELECT 1"))
                await connection.commit()
            except Exception as exc:
                log.error("%s: the ownership lock's connection failed: %s", operator_id, exc)
                gone.append(operator_id)
                self._held.pop(operator_id, None)
                with contextlib.suppress(Exception):
                    await connection.invalidate()
        return gone

    async def close(self) -> None:
        for operator_id in list(self._held):
            await self.release(operator_id)


class FileOwnership:
    """All links of one SQLite database belong to the process holding the lock file."""

    def __init__(self, path: str | None) -> None:
        self._path = path
        self._file: IO[bytes] | None = None

    async def acquire(self, operator_id: str) -> bool:
        if self._path is None or self._file is not None:
            return True
        self._file = await asyncio.to_thread(_try_lock, self._path)
        return self._file is not None

    async def release(self, operator_id: str) -> None:
        """The lock covers every operator: it is given up by ``close`` only."""

    async def lost(self) -> list[str]:
        return []

    async def close(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def _try_lock(path: str) -> IO[bytes] | None:
    handle = open(path, "ab")  # noqa: SIM115 (held open for the lock's lifetime)
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def ownership_for(engine: AsyncEngine) -> Ownership:
    url = engine.url
    if url.get_backend_name() == "postgresql":
        return PostgresOwnership(engine)
    database = url.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return FileOwnership(None)
    return FileOwnership(os.path.abspath(database) + ".links.lock")
