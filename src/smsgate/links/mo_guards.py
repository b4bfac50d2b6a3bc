"""The statements of a link's MO redelivery guards (``mo_store.py``): the guards of a batch
of MOs inserted unless one of them is a redelivery, and confirmed guards deleted."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final, Protocol, cast

from sqlalchemy import Table
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession

from smsgate.links.incoming import IncomingMoPart
from smsgate.services.mo import MO_COLUMNS, MO_TABLE, IncomingMo, unrouted_rows
from smsgate.services.mo_routing import (
    ShortNumberView,
    routing_sql,
    short_number_views,
    wanted_parameter,
)
from smsgate.store.models import MoUnconfirmedAck
from smsgate.store.row_sets import (
    execute,
    insert_rows,
    insert_sql,
    json_value,
    payload,
    stored_time,
)


class GuardedMo(Protocol):
    """An MO as its guard needs it (``mo_store.WholeMo``)."""

    @property
    def part(self) -> IncomingMoPart: ...

    @property
    def connection_id(self) -> str: ...


async def new_guards(
    session: AsyncSession,
    operator_id: str,
    mos: Sequence[GuardedMo],
    guarded: Sequence[GuardedMo],
    rows: list[dict[str, Any]],
    since: datetime,
    confirmed: Sequence[int],
    incomings: Sequence[IncomingMo],
    now: datetime,
) -> tuple[dict[str, int] | None, NumbersRead | None, MosInserted | None]:
    """Delete the ``confirmed`` guards and insert ``rows`` (the guards of ``guarded``, MOs of
    one connection), unless one of them matches a guard of another connection: None then
    (a redelivery), and nothing inserted. Returns each guard's id by operator message id,
    and on PostgreSQL, from the same statement, the short numbers of ``mos`` and the ids of
    ``mo_rows`` (``services/mo.unrouted_rows``) inserted with the guards, by (operator id,
    operator message id): duplicates of stored MOs left out."""
    connection = await session.connection()
    if connection.dialect.name != "sqlite":
        found = await execute(
            connection,
            _new_guards_sql(connection.dialect),
            (
                json.dumps(list(confirmed)),
                operator_id,
                guarded[0].connection_id if guarded else "",
                since,
                json.dumps(sorted({mo.part.fingerprint for mo in guarded})),
                json.dumps(
                    [{**row, "received_at": row["received_at"].isoformat()} for row in rows]
                ),
                wanted_parameter((operator_id, mo.part.short_number) for mo in mos),
                payload(connection.dialect, MO_TABLE, MO_COLUMNS, unrouted_rows(incomings, now)),
            ),
        )
        # One row at least: the guards and the MOs (JSON arrays), with each row of the
        # routing query.
        inserted = json_value(found[0][0])
        if rows and not inserted:
            return None, None, None
        numbers = short_number_views(row[2:] for row in found if row[2] is not None)
        stored = {(op, message_id): mo_id for op, message_id, mo_id in json_value(found[0][1])}
        return {message_id: guard_id for message_id, guard_id in inserted}, numbers, stored
    await confirm_acks(session, list(confirmed))
    if await _earlier_guards(session, operator_id, guarded, since):
        return None, None, None
    guards = {
        message_id: guard_id
        for message_id, guard_id in await insert_rows(
            connection,
            _GUARDS,
            rows,
            columns=_GUARD_COLUMNS,
            returning=("operator_message_id", "id"),
        )
    }
    return guards, None, None


NumbersRead = dict[tuple[str, str], ShortNumberView]
MosInserted = dict[tuple[str, str], int]


@functools.lru_cache(maxsize=4)
def _new_guards_sql(dialect: Dialect) -> str:
    # In a data-modifying WITH every part sees the tables as they were before the statement:
    # the guards being deleted are left out of the look for earlier ones by their ids. The
    # MOs are inserted, unrouted, when the guards are, and the short numbers read for their
    # routes: one row each, beside the guards and the MOs inserted.
    mos = insert_sql(
        dialect,
        MO_TABLE,
        MO_COLUMNS,
        conflict=("operator_id", "operator_message_id"),
        returning=("operator_id", "operator_message_id", "id"),
        parameter=8,
        where="NOT EXISTS (SELECT 1 FROM earlier)",
    )
    return (
        "WITH confirmed AS (SELECT json_array_elements_text($1::json)::bigint AS id), "  # noqa: S608
        "gone AS (DELETE FROM mo_unconfirmed_acks WHERE id IN (SELECT id FROM confirmed)), "
        "earlier AS (SELECT 1 FROM mo_unconfirmed_acks WHERE operator_id = $2 "
        "AND connection_id != $3 AND received_at >= $4 "
        "AND fingerprint IN (SELECT json_array_elements_text($5::json)) "
        "AND id NOT IN (SELECT id FROM confirmed) LIMIT 1), "
        "added AS (INSERT INTO mo_unconfirmed_acks (operator_id, fingerprint, "
        "operator_message_id, connection_id, received_at) SELECT r.operator_id, "
        "r.fingerprint, r.operator_message_id, r.connection_id, r.received_at "
        "FROM json_to_recordset($6::json) AS r(operator_id text, fingerprint text, "
        "operator_message_id text, connection_id text, received_at timestamptz) "
        "WHERE NOT EXISTS (SELECT 1 FROM earlier) RETURNING operator_message_id, id), "
        f"mos AS ({mos}) "
        "SELECT g.guards, g.mos, n.* FROM (SELECT "
        "(SELECT coalesce(json_agg(json_build_array(operator_message_id, id)), '[]'::json) "
        "FROM added) AS guards, (SELECT coalesce(json_agg(json_build_array(operator_id, "
        "operator_message_id, id)), '[]'::json) FROM mos) AS mos) AS g "
        "LEFT JOIN (" + routing_sql(7) + ") AS n ON true"
    )


async def _earlier_guards(
    session: AsyncSession, operator_id: str, mos: Sequence[GuardedMo], since: datetime
) -> bool:
    """Whether any of ``mos`` matches a guard of another connection (SQLite): a redelivery."""
    if not mos:
        return False
    connection = await session.connection()
    fingerprints = json.dumps(sorted({mo.part.fingerprint for mo in mos}))
    since_stored = stored_time(connection.dialect, since)
    found = await execute(
        connection, _EARLIER_SQLITE, (operator_id, mos[0].connection_id, since_stored, fingerprints)
    )
    return bool(found)


_EARLIER_SQLITE: Final = (
    "SELECT id FROM mo_unconfirmed_acks WHERE operator_id = ? AND connection_id != ? "
    "AND received_at >= ? AND fingerprint IN (SELECT value FROM json_each(?)) LIMIT 1"
)


_GUARDS: Final = cast(Table, MoUnconfirmedAck.__table__)
_GUARD_COLUMNS: Final = (
    "operator_id",
    "fingerprint",
    "operator_message_id",
    "connection_id",
    "received_at",
)


async def confirm_acks(session: AsyncSession, guard_ids: list[int]) -> None:
    """The SMSC has read the responses of these MOs: they no longer guard anything."""
    if guard_ids:
        connection = await session.connection()
        sql = _CONFIRM_SQLITE if connection.dialect.name == "sqlite" else _CONFIRM_POSTGRESQL
        await execute(connection, sql, (json.dumps(guard_ids),))


_CONFIRM_SQLITE: Final = (
    "DELETE FROM mo_unconfirmed_acks WHERE id IN (SELECT value FROM json_each(?))"
)
_CONFIRM_POSTGRESQL: Final = (
    "DELETE FROM mo_unconfirmed_acks WHERE id IN "
    "(SELECT json_array_elements_text($1::json)::bigint)"
)
