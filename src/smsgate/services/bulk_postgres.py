"""The batches of bulk sends on PostgreSQL: asyncpg directly, on a connection of the engine's
pool.

The same transaction as the SQLAlchemy store (``bulk_batch.py``: the same locks in the same
order, the same conditional writes), without the ORM and with constant statements (lists go
in as arrays, through ``= ANY`` and ``unnest``), which asyncpg prepares once per connection.
The writer keeps its connection while batches follow one another, so a checkout (and the
pool's pre-ping, three round trips) is paid once per burst, not per batch.

A batch is four to seven round trips whatever its size: BEGIN, one statement for every read
(services, opt-outs, idempotency keys, routing), the locks it needs (counters, send marks,
merchants), one statement for every write, COMMIT.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from smsgate.services.bulk_batch import NEVER, BatchConflict
from smsgate.services.bulk_decide import BatchDecision
from smsgate.services.bulk_inputs import ServiceView
from smsgate.services.bulk_model import MT_COST_KIND, Accepted, BulkRequest, SendResult
from smsgate.services.routes import RouteRow
from smsgate.store.ledger import merchant_account

__all__ = ["PostgresBatches"]

# What the checks read, in one round trip: the services with their merchants, the recipients
# on an opt-out list, the messages already sent under the batch's idempotency keys, the routes
# of enabled operators and the enabled operators; each a JSON array of rows.
_READ: Final = (
    "SELECT"
    " (SELECT json_agg(json_build_array(s.id, s.type, s.merchant_id, s.status,"
    " s.ip_allowlist, s.settings, m.status, m.currency, m.timezone))"
    " FROM services AS s JOIN merchants AS m ON m.id = s.merchant_id"
    " WHERE s.id = ANY($1::bigint[])),"
    " (SELECT json_agg(json_build_array(o.service_id, o.msisdn)) FROM opt_outs AS o"
    " JOIN unnest($2::bigint[], $3::text[]) AS w(service_id, msisdn)"
    " ON o.service_id = w.service_id AND o.msisdn = w.msisdn),"
    " (SELECT json_agg(json_build_array(t.id, t.service_id, t.idempotency_key, t.msisdn,"
    " t.parts, t.encoding, t.cost_minor, t.currency, t.operator_id)) FROM mt_messages AS t"
    " JOIN unnest($4::bigint[], $5::text[]) AS w(service_id, idempotency_key)"
    " ON t.service_id = w.service_id AND t.idempotency_key = w.idempotency_key),"
    " (SELECT json_agg(json_build_array(r.country, r.operator_id, r.priority))"
    " FROM routes AS r JOIN operators AS o ON o.id = r.operator_id WHERE o.enabled),"
    " (SELECT json_agg(json_build_array(id, country)) FROM operators WHERE enabled)"
)
_LOCK_COUNTERS: Final = (
    'INSERT INTO quota_counters (service_id, "window", count) '
    "SELECT k.service_id, k.win, 0 FROM unnest($1::bigint[], $2::text[]) "
    "WITH ORDINALITY AS k(service_id, win, position) ORDER BY k.position "
    'ON CONFLICT (service_id, "window") DO UPDATE SET count = quota_counters.count '
    'RETURNING service_id, "window", count'
)
_LOCK_MARKS: Final = (
    "INSERT INTO send_marks (service_id, scope, last_at) "
    "SELECT k.service_id, k.scope, $3 FROM unnest($1::bigint[], $2::text[]) "
    "WITH ORDINALITY AS k(service_id, scope, position) ORDER BY k.position "
    "ON CONFLICT (service_id, scope) DO UPDATE SET last_at = send_marks.last_at "
    "RETURNING service_id, scope, last_at"
)
_MERCHANTS: Final = (
    "SELECT id, balance_minor, credit_minor FROM merchants WHERE id = ANY($1::bigint[]) "
    "ORDER BY id FOR UPDATE"
)
# Every write of a batch in one statement. The MT ids are drawn first, beside each row's
# position, so the ledger refs and the answers need no assumption about the order in which
# rows are inserted. Data-modifying CTEs all run to completion; the rows they move are
# already locked by this transaction, so their order among themselves cannot deadlock.
_WRITE: Final = (
    "WITH rows AS MATERIALIZED ("
    " SELECT nextval(pg_get_serial_sequence('mt_messages', 'id')) AS id, t.*"
    " FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[],"
    " $6::text[], $7::text[], $8::int[], $9::bigint[], $10::text[], $11::text[],"
    " $12::timestamptz[], $13::text[]) WITH ORDINALITY AS t(merchant_id, service_id,"
    " operator_id, msisdn, sender, text, encoding, parts, cost_minor, currency,"
    " idempotency_key, at, details, position)),"
    " mts AS (INSERT INTO mt_messages (id, merchant_id, service_id, operator_id, msisdn,"
    " sender, text, encoding, parts, cost_minor, currency, idempotency_key,"
    " next_attempt_at, created_at, updated_at, details, mo_id, status, error_code, attempts)"
    " SELECT id, merchant_id, service_id, operator_id, msisdn, sender, text, encoding, parts,"
    " cost_minor, currency, idempotency_key, at, at, at, details::json, NULL, 'queued', '', 0"
    " FROM rows ORDER BY position RETURNING 1),"
    " counters AS (UPDATE quota_counters AS q SET count = q.count + u.used"
    " FROM unnest($14::bigint[], $15::text[], $16::bigint[], $17::bigint[])"
    " AS u(service_id, win, used, lim) WHERE q.service_id = u.service_id"
    ' AND q."window" = u.win AND q.count + u.used <= u.lim RETURNING 1),'
    " marks AS (UPDATE send_marks AS m SET last_at = u.last_at"
    " FROM unnest($18::bigint[], $19::text[], $20::timestamptz[]) AS u(service_id, scope,"
    " last_at) WHERE m.service_id = u.service_id AND m.scope = u.scope RETURNING 1),"
    # store/ledger.charge_merchant_many's rows: each merchant's total debited within its
    # credit, and one entry per message, only for a merchant whose debit happened.
    " debits AS (UPDATE merchants AS m SET balance_minor = m.balance_minor - d.total"
    " FROM unnest($21::bigint[], $22::bigint[], $23::text[]) AS d(id, total, currency)"
    " WHERE m.id = d.id AND m.currency = d.currency"
    " AND m.balance_minor - d.total >= -m.credit_minor RETURNING m.id),"
    " entries AS (INSERT INTO ledger_entries (account, merchant_id, kind, amount_minor,"
    " currency, ref, memo, created_at)"
    " SELECT e.account, e.merchant_id, $24, e.amount, e.currency, 'mt:' || rows.id, e.memo,"
    " e.at FROM unnest($25::text[], $26::bigint[], $27::bigint[], $28::bigint[], $29::text[],"
    " $30::text[], $31::timestamptz[]) AS e(account, merchant_id, position, amount, currency,"
    " memo, at) JOIN rows ON rows.position = e.position"
    " WHERE e.merchant_id IN (SELECT id FROM debits) RETURNING 1)"
    " SELECT (SELECT array_agg(id ORDER BY position) FROM rows),"
    " (SELECT count(*) FROM counters), (SELECT count(*) FROM debits),"
    " (SELECT count(*) FROM entries)"
)


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows turned into one list per column (the arrays ``unnest`` takes)."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]


def _rows(value: Any) -> list[list[Any]]:
    """A ``json_agg`` column: decoded already by the codec SQLAlchemy's dialect sets on its
    connections, text on a connection without it, NULL when no row matched."""
    if value is None:
        return []
    rows: list[list[Any]] = json.loads(value) if isinstance(value, str) else value
    return rows


class PostgresBatches:
    """This process's bulk batches on one PostgreSQL database, one after another."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._held: AsyncConnection | None = None

    async def accept(
        self, requests: Sequence[BulkRequest], nows: Sequence[datetime]
    ) -> list[SendResult]:
        batch = BatchDecision(requests, nows)  # parsed before any row is locked
        if self._held is None:
            self._held = await self._engine.connect()
        raw = await self._held.get_raw_connection()
        connection: asyncpg.Connection = raw.driver_connection
        try:
            async with connection.transaction():
                return await _accept(connection, batch)
        except BaseException:
            await self.release()  # a broken connection is not kept
            raise

    async def release(self) -> None:
        """Give the connection back to the pool (the writer has nothing more to do)."""
        held, self._held = self._held, None
        if held is not None:
            await held.close()


async def _accept(db: asyncpg.Connection, batch: BatchDecision) -> list[SendResult]:
    found = await db.fetchrow(
        _READ,
        batch.service_ids(),
        *_columns(batch.recipients(), 2),
        *_columns(batch.idempotency_keys(), 2),
    )
    services_found, opted_found, earlier_found, routes_found, operators_found = (
        _rows(value) for value in found
    )
    services = {
        row[0]: ServiceView.of(
            kind=row[1],
            merchant_id=row[2],
            status=row[3],
            ip_allowlist=row[4],
            settings=row[5],
            merchant_status=row[6],
            currency=row[7],
            timezone=row[8],
        )
        for row in services_found
    }
    opted_out = {(row[0], row[1]) for row in opted_found}
    earlier = {
        (row[1], row[2]): Accepted(
            row[0], row[3], row[4], row[5], row[6], row[7], row[8], duplicate=True
        )
        for row in earlier_found
    }
    routes = [RouteRow(*row) for row in routes_found]
    operators = [(row[0], row[1]) for row in operators_found]
    batch.check(services, opted_out, earlier, routes, operators)

    counters: dict[tuple[int, str], int] = {}
    if keys := batch.counter_keys():
        for service_id, window, count in await db.fetch(_LOCK_COUNTERS, *_columns(keys, 2)):
            counters[(service_id, window)] = int(count)
    marks: dict[tuple[int, str], datetime] = {}
    if keys := batch.mark_keys():
        for service_id, scope, last in await db.fetch(_LOCK_MARKS, *_columns(keys, 2), NEVER):
            marks[(service_id, scope)] = last
    funds: dict[int, tuple[int, int]] = {}
    if ids := batch.merchant_ids():
        for merchant_id, balance, credit in await db.fetch(_MERCHANTS, ids):
            funds[merchant_id] = (int(balance), -int(credit))
    batch.decide(counters, marks, funds)
    return batch.finish(await _write(db, batch))


async def _write(db: asyncpg.Connection, batch: BatchDecision) -> list[int]:
    if not batch.mt_rows:
        return []
    rows = [
        (
            r["merchant_id"],
            r["service_id"],
            r["operator_id"],
            r["msisdn"],
            r["sender"],
            r["text"],
            r["encoding"],
            r["parts"],
            r["cost_minor"],
            r["currency"],
            r["idempotency_key"],
            r["created_at"],
            json.dumps(r["details"]),
        )
        for r in batch.mt_rows
    ]
    charges = batch.charges()
    entries = [
        (
            merchant_account(charge.merchant_id),
            charge.merchant_id,
            position + 1,  # WITH ORDINALITY counts from 1
            -amount,
            charge.currency,
            memo[:255],
            charge.at,
        )
        for charge in charges
        for position, amount, memo in charge.entries
    ]
    moves = batch.counter_moves()
    ids, moved, debited, booked = await db.fetchrow(
        _WRITE,
        *_columns(rows, 13),
        *_columns(moves, 4),
        *_columns(batch.mark_moves(), 3),
        *_columns([(c.merchant_id, c.total, c.currency) for c in charges], 3),
        MT_COST_KIND,
        *_columns(entries, 7),
    )
    if moved != len(moves):
        raise BatchConflict("a quota counter moved under its lock")
    if debited != len(charges) or booked != len(entries):
        raise BatchConflict("a merchant's balance moved under its lock")
    return [int(i) for i in ids]
