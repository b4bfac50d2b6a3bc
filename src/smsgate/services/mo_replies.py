"""The replies an MO batch queues, and the MOs' outcomes written with them (services/mo.py).

On SQLite the replies are queued through ``services/mt.queue_replies`` and the MOs updated in
one more statement; on PostgreSQL both are one statement, the MOs' details taking their
reply's MT id inside the database (a round trip costs more than the work).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, cast

from sqlalchemy import Table
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from smsgate.services.mt import (
    MT_TABLE,
    QUEUED_RETURNING,
    REPLY_COLUMNS,
    NewMt,
    QueuedMt,
    queue_replies,
    reply_rows,
)
from smsgate.store.models import MoMessage
from smsgate.store.row_sets import execute, insert_sql, payload, update_rows

if TYPE_CHECKING:
    from smsgate.services.mo import RoutedMo

_MO: Final = cast(Table, MoMessage.__table__)
# What routing decides of a stored MO (services/mo.unrouted_rows).
ROUTE_COLUMNS: Final = ("service_id", "status", "price_minor", "currency")


async def write_replies(
    session: AsyncSession,
    connection: AsyncConnection,
    changed: list[RoutedMo],
    replies: Mapping[int, tuple[NewMt, str | None]],
    now: datetime,
    claim: bool,
    unwritten: Mapping[int, Mapping[str, Any]],
) -> list[QueuedMt]:
    """Queue the replies, then write the handled MOs' status and details (with MT ids), and
    the ``unwritten`` routes (PostgreSQL)."""
    mts = {mo_id: mt for mo_id, (mt, _) in replies.items()}
    if connection.dialect.name != "sqlite":
        return await _write_replies_postgresql(
            connection, changed, replies, mts, now, claim, unwritten
        )
    assert not unwritten
    queued = await queue_replies(session, mts, now=now, claimed=claim)
    mt_ids = {mt.mo_id: mt.id for mt in queued}
    for routed_mo in changed:
        if routed_mo.mo_id in replies:
            key_for_id = replies[routed_mo.mo_id][1]
            if key_for_id is not None:
                routed_mo.details[key_for_id] = mt_ids[routed_mo.mo_id]
    await update_rows(
        connection,
        _MO,
        [{"id": mo.mo_id, "status": mo.status, "details": mo.details} for mo in changed],
        key="id",
        columns=("status", "details"),
    )
    return queued


async def _write_replies_postgresql(
    connection: AsyncConnection,
    changed: list[RoutedMo],
    replies: Mapping[int, tuple[NewMt, str | None]],
    mts: Mapping[int, NewMt],
    now: datetime,
    claim: bool,
    unwritten: Mapping[int, Mapping[str, Any]],
) -> list[QueuedMt]:
    """The same rows in one statement (a round trip costs more than the work): the MOs'
    details get their reply's MT id in the database."""
    if not changed and not mts and not unwritten:
        return []
    dialect = connection.dialect
    mos = {
        mo_id: {**{name: row[name] for name in ROUTE_COLUMNS}, "details": row["details"]}
        for mo_id, row in unwritten.items()
    }
    for mo in changed:
        mos[mo.mo_id] = {
            "status": mo.status,
            "details": mo.details,
            "mt_key": replies[mo.mo_id][1] if mo.mo_id in replies else None,
            "service_id": mo.service.id,
            "price_minor": mo.short_number.price_minor,
            "currency": mo.short_number.currency,
        }
    rows = await execute(
        connection,
        _replies_and_mos_sql(dialect),
        (
            payload(dialect, MT_TABLE, REPLY_COLUMNS, reply_rows(mts, now=now, claimed=claim)),
            json.dumps([{"id": mo_id, **mo} for mo_id, mo in mos.items()], separators=(",", ":")),
        ),
    )
    queued = [QueuedMt(*row) for row in rows]
    mt_ids = {mt.mo_id: mt.id for mt in queued}
    for routed_mo in changed:
        key_for_id = replies[routed_mo.mo_id][1] if routed_mo.mo_id in replies else None
        if key_for_id is not None:
            routed_mo.details[key_for_id] = mt_ids[routed_mo.mo_id]
    return queued


@functools.lru_cache(maxsize=4)
def _replies_and_mos_sql(dialect: Dialect) -> str:
    insert = insert_sql(dialect, MT_TABLE, REPLY_COLUMNS, returning=QUEUED_RETURNING)
    # Every part of a WITH sees the tables as they were before the statement: the MOs'
    # update takes the MT ids from what the insert returns.
    return (
        f"WITH mt AS ({insert}), "  # noqa: S608 (constants and the table's column names)
        "mo AS (UPDATE mo_messages SET status = r.status, details = CASE "
        "WHEN r.mt_key IS NULL OR mt.id IS NULL THEN r.details "
        "ELSE (r.details::jsonb || jsonb_build_object(r.mt_key, mt.id))::json END, "
        "service_id = r.service_id, price_minor = r.price_minor, currency = r.currency "
        "FROM json_to_recordset($2::json) AS r(id bigint, status text, details json, "
        "mt_key text, service_id bigint, price_minor bigint, currency text) "
        "LEFT JOIN mt ON mt.mo_id = r.id WHERE mo_messages.id = r.id) "
        f"SELECT {', '.join(QUEUED_RETURNING)} FROM mt"
    )
