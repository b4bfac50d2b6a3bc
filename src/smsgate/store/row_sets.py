"""Many rows in one statement, on SQLite and PostgreSQL alike: the rows travel as one JSON
array parameter and the database unpacks them (``json_each`` on SQLite, ``json_to_recordset``
on PostgreSQL).

Why: a statement's fixed cost (SQLAlchemy's execution path, aiosqlite's hand-over to its
thread, a round trip to PostgreSQL) dwarfs the cost of a row, and ``executemany`` on aiosqlite
binds one row at a time, taking the GIL back between rows (see ``links/sqlite_batches.py``).
One JSON parameter is bound once and walked in C. The statements are built once per table
and shape and sent as driver SQL, so SQLAlchemy compiles nothing per call.

On SQLite each statement is also one hand-over to aiosqlite's thread instead of about four
(cursor, execute, fetch, close each queue a call there and wait for the GIL to come back):
:func:`execute` runs the statement and fetches its rows in one call, on the connection of the
caller's transaction.

Values are Python values as the ORM would take them: datetimes aware (stored as the
``UTCDateTime`` columns store them), JSON columns as dicts or lists. Every function runs in
the caller's transaction.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Table
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from smsgate.store.types import UTCDateTime

__all__ = [
    "execute",
    "insert_rows",
    "insert_sql",
    "json_value",
    "payload",
    "stored_time",
    "update_rows",
]


async def insert_rows(
    connection: AsyncConnection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    columns: Sequence[str],
    conflict: Sequence[str] = (),
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """Insert ``rows`` (each with every one of ``columns``); with ``conflict``, a row whose
    key exists (in the table, or earlier in ``rows``) is skipped. Returns the ``returning``
    columns of the rows inserted, in no particular order."""
    if not rows:
        return []
    dialect = connection.dialect
    sql = _insert_sql(dialect, table, tuple(columns), tuple(conflict), tuple(returning), 1)
    return await execute(connection, sql, (payload(dialect, table, columns, rows),))


async def update_rows(
    connection: AsyncConnection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    key: str,
    columns: Sequence[str],
) -> None:
    """Set ``columns`` of the row whose ``key`` column equals each row's ``key`` value."""
    if not rows:
        return
    dialect = connection.dialect
    sql = _update_sql(dialect, table, key, tuple(columns))
    await execute(connection, sql, (payload(dialect, table, [key, *columns], rows),))


async def execute(
    connection: AsyncConnection, sql: str, parameters: Sequence[Any]
) -> list[tuple[Any, ...]]:
    """Run driver SQL (``?`` placeholders on SQLite, ``$n`` on PostgreSQL) in the caller's
    transaction; return every row it gives. Values come back as the driver gives them."""
    if connection.dialect.name == "sqlite":
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        # aiosqlite's queue of calls for its thread and its sqlite3 connection (SQLAlchemy's
        # aiosqlite adapter uses the same two); without them, the ordinary path below.
        call_in_thread = getattr(driver, "_execute", None)
        sqlite_connection = getattr(driver, "_connection", None)
        if call_in_thread is not None and sqlite_connection is not None:
            rows: list[tuple[Any, ...]] = await call_in_thread(
                _fetch_all, sqlite_connection, sql, tuple(parameters)
            )
            return rows
    result = await connection.exec_driver_sql(sql, tuple(parameters))
    return [tuple(row) for row in result.all()] if result.returns_rows else []


def json_value(value: Any) -> Any:
    """A ``json`` value :func:`execute` returned: text from the driver itself (sqlite3, a raw
    asyncpg connection), decoded already through SQLAlchemy's asyncpg adapter."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def _fetch_all(connection: Any, sql: str, parameters: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    cursor = connection.execute(sql, parameters)
    try:
        return [tuple(row) for row in cursor.fetchall()]
    finally:
        cursor.close()


def stored_time(dialect: Dialect, value: datetime) -> Any:
    """``value`` as a driver SQL parameter compared with ``UTCDateTime`` columns."""
    if dialect.name == "sqlite":
        return _time_storer(dialect)(value)
    return value


def insert_sql(
    dialect: Dialect,
    table: Table,
    columns: Sequence[str],
    *,
    conflict: Sequence[str] = (),
    returning: Sequence[str] = (),
    parameter: int = 1,
    where: str = "true",
) -> str:
    """The statement of :func:`insert_rows`, its rows (:func:`payload`) the ``parameter``-th
    parameter on PostgreSQL: a part of a larger statement (a data-modifying ``WITH``).
    ``where``: a condition (constant SQL) on inserting the rows at all."""
    return _insert_sql(
        dialect, table, tuple(columns), tuple(conflict), tuple(returning), parameter, where
    )


def payload(
    dialect: Dialect, table: Table, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]
) -> str:
    """``rows`` as the JSON parameter of :func:`insert_sql` (values as the ORM takes them)."""
    times = [name for name in columns if isinstance(table.c[name].type, UTCDateTime)]
    if times:
        store = _time_storer(dialect)
        # A batch's rows mostly share one or two moments ("now"): convert each once.
        stored: dict[Any, Any] = {}

        def convert(value: Any) -> Any:
            try:
                return stored[value]
            except KeyError:
                result = stored[value] = store(value)
                return result

        rows = [{**row, **{name: convert(row[name]) for name in times}} for row in rows]
    return json.dumps(rows, separators=(",", ":"))


@functools.lru_cache(maxsize=8)
def _time_storer(dialect: Dialect) -> Any:
    # Cached: building the bind processor adapts SQLAlchemy types, which cost more than the
    # rest of a small statement's Python work.
    column_type = UTCDateTime()
    if dialect.name == "sqlite":
        # The very text SQLAlchemy writes for the column, so that comparisons keep working.
        as_text = DateTime().dialect_impl(dialect).bind_processor(dialect)
        assert as_text is not None
        return lambda value: as_text(column_type.process_bind_param(value, dialect))
    return lambda value: None if value is None else _iso(column_type, value, dialect)


def _iso(column_type: UTCDateTime, value: datetime, dialect: Dialect) -> str:
    stored = column_type.process_bind_param(value, dialect)
    assert stored is not None
    return stored.isoformat()


@functools.lru_cache(maxsize=64)
def _insert_sql(
    dialect: Dialect,
    table: Table,
    columns: tuple[str, ...],
    conflict: tuple[str, ...],
    returning: tuple[str, ...],
    parameter: int,
    where: str = "true",
) -> str:
    _check_names(table, (*columns, *conflict, *returning))
    source, values = _source(dialect, table, columns, parameter)
    # Only the table's own column names are spliced in (checked above); values are bound.
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT {values} FROM {source}"  # noqa: S608
    if conflict or where != "true":
        # SQLite needs the WHERE to parse ON CONFLICT after a SELECT (its "parsing ambiguity").
        sql += f" WHERE {where}"
    if conflict:
        sql += f" ON CONFLICT ({', '.join(conflict)}) DO NOTHING"
    if returning:
        sql += f" RETURNING {', '.join(returning)}"
    return sql


@functools.lru_cache(maxsize=64)
def _update_sql(dialect: Dialect, table: Table, key: str, columns: tuple[str, ...]) -> str:
    _check_names(table, (key, *columns))
    source, _ = _source(dialect, table, (key, *columns))
    if dialect.name == "sqlite":
        sets = ", ".join(f"{name} = r.value ->> '{name}'" for name in columns)
        match = f"{table.name}.{key} = r.value ->> '{key}'"
    else:
        sets = ", ".join(f"{name} = r.{name}" for name in columns)
        match = f"{table.name}.{key} = r.{key}"
    return f"UPDATE {table.name} SET {sets} FROM {source} WHERE {match}"  # noqa: S608


def _check_names(table: Table, names: Sequence[str]) -> None:
    unknown = [name for name in names if name not in table.c]
    if unknown:
        raise ValueError(f"{table.name} has no column {', '.join(unknown)}")


def _source(
    dialect: Dialect, table: Table, columns: Sequence[str], parameter: int = 1
) -> tuple[str, str]:
    """The FROM clause that unpacks the JSON parameter, and the column list of its rows."""
    if dialect.name == "sqlite":
        return "json_each(?) AS r", ", ".join(f"r.value ->> '{name}'" for name in columns)
    types = ", ".join(f"{name} {_pg_type(table, name, dialect)}" for name in columns)
    return f"json_to_recordset(${parameter}::json) AS r({types})", ", ".join(columns)


def _pg_type(table: Table, name: str, dialect: Dialect) -> str:
    column_type = table.c[name].type
    if isinstance(column_type, JSON):
        return "json"
    return str(column_type.compile(dialect=dialect))
