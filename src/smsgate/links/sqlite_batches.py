"""The link's hot statements on SQLite, each one statement with one JSON parameter.

Why: aiosqlite runs every statement in a thread. ``executemany`` (and fetching many rows) there
binds or builds one row at a time, taking the GIL back after each step while the event loop
thread wants it too, and each hand-over can wait for the interpreter's switch interval. With
the rows in one JSON array, SQLite walks them in C (``json_each``, SQLite 3.38+) in a single
step with the GIL released, and the event loop keeps serving the SMPP session meanwhile
(docs/benchmarks.md has the figures). PostgreSQL goes through SQLAlchemy Core as usual.

Every function runs in the caller's transaction (BEGIN IMMEDIATE: the select-then-update of
``claim`` cannot interleave with another writer).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncConnection

from smsgate.store.models import MtMessage

_SELECT_DUE: Final = (
    "SELECT json_group_array(json_array(id, msisdn, sender, text, encoding, attempts)) "
    "FROM (SELECT id, msisdn, sender, text, encoding, attempts FROM mt_messages "
    "WHERE operator_id = ? AND status = 'queued' AND next_attempt_at <= ? "
    "ORDER BY next_attempt_at, id LIMIT ?)"
)
_MARK_SUBMITTING: Final = (
    "UPDATE mt_messages SET status = 'submitting', attempts = attempts + 1, updated_at = ? "
    "WHERE id IN (SELECT value ->> 0 FROM json_each(?))"
)
_INSERT_PARTS: Final = (
    "INSERT INTO mt_parts (mt_id, part_no, operator_id, operator_message_id, status, "
    "error_code, submitted_at, done_at) "
    "SELECT value ->> 0, value ->> 1, ?, value ->> 2, value ->> 3, value ->> 4, "
    "CASE WHEN value ->> 5 THEN ? END, CASE WHEN value ->> 3 = 'failed' THEN ? END "
    "FROM json_each(?)"
)
_MARK_SUBMITTED: Final = (
    "UPDATE mt_messages SET status = 'submitted', error_code = '', updated_at = ? "
    "WHERE status = 'submitting' AND id IN (SELECT value FROM json_each(?))"
)

ClaimedRow = tuple[int, str, str, str, str, int]
"""id, msisdn, sender, text, encoding, attempts (after this claim)."""
PartRow = tuple[int, int, str | None, str, str, bool]
"""mt_id, part_no, operator_message_id, status, error_code, sent (has a submitted_at)."""


def stamp(connection: AsyncConnection, value: datetime) -> Any:
    """``value`` as the datetime columns store it on this database."""
    processor = MtMessage.__table__.c.updated_at.type.bind_processor(connection.dialect)
    return processor(value) if processor is not None else value


async def claim(
    connection: AsyncConnection, operator_id: str, now: datetime, limit: int
) -> list[ClaimedRow]:
    """Mark up to ``limit`` due queued MTs of the operator ``submitting``; return them."""
    at = stamp(connection, now)
    result = await connection.exec_driver_sql(_SELECT_DUE, (operator_id, at, limit))
    rows = result.scalar_one()
    if rows == "[]":
        return []
    await connection.exec_driver_sql(_MARK_SUBMITTING, (at, rows))
    return [
        (mt_id, msisdn, sender, text, encoding, attempts + 1)
        for mt_id, msisdn, sender, text, encoding, attempts in json.loads(rows)
    ]


async def insert_parts(
    connection: AsyncConnection, operator_id: str, parts: Sequence[PartRow], now: datetime
) -> None:
    at = stamp(connection, now)
    await connection.exec_driver_sql(
        _INSERT_PARTS, (operator_id, at, at, json.dumps([list(part) for part in parts]))
    )


async def mark_submitted(connection: AsyncConnection, mt_ids: list[int], now: datetime) -> None:
    await connection.exec_driver_sql(_MARK_SUBMITTED, (stamp(connection, now), json.dumps(mt_ids)))
