"""Accepting many bulk messages in the caller's SQLAlchemy transaction, with a fixed number of
statements (the store of ``services/bulk_decide.py`` for callers that hold a session, such as
a campaign, whose rows are written in the same transaction).

``accept_batch`` gives each request exactly the answer ``services/bulk.accept`` would give if
the requests ran one after another in the given order, in one transaction; but it reads what
the checks need for the whole batch at once, decides in memory, and writes the outcome for the
whole batch at once. About fifteen statements serve a batch of hundreds, where ``accept`` needs
ten or more per message; the statements, not the rules, are what a message costs.

Exactness under concurrency. Before deciding, the batch locks what its decisions depend on and
reads it in the same statement:

- every quota counter it may move, by ``INSERT ... ON CONFLICT DO UPDATE SET count = count
  RETURNING count`` (the row exists afterwards and is locked until commit; on SQLite the
  transaction holds the database's write lock from BEGIN IMMEDIATE anyway);
- every send mark it may move, the same way;
- every merchant it may charge, by ``SELECT ... FOR UPDATE``.

Nobody else can move those rows until the batch commits, so the decisions made in memory
against the values read are exact. The writes are still conditional (``count + n <= limit``,
the ledger's balance floor): if one found the row changed, it would fail the batch rather than
overdraw a quota or an account. Rows are locked in one order everywhere (by service, counters
month, week, day; then send marks; then merchants by id), as ``accept`` does, so batches and
single sends wait for each other but do not deadlock.

The HTTP endpoints run the same decision through stores without the ORM
(``bulk_sqlite.py``, ``bulk_postgres.py``) that issue the same statements.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from smsgate.services.bulk_decide import BatchDecision
from smsgate.services.bulk_inputs import ServiceView
from smsgate.services.bulk_model import MT_COST_KIND, Accepted, BulkRequest, SendResult
from smsgate.services.routes import RouteRow
from smsgate.store.ledger import Charge, charge_merchant_many
from smsgate.store.models import (
    Merchant,
    MtMessage,
    Operator,
    OptOut,
    QuotaCounter,
    Route,
    SendMark,
    Service,
)

__all__ = ["NEVER", "BatchConflict", "accept_batch"]

_MT: Final = cast(Table, MtMessage.__table__)
_COUNTERS: Final = cast(Table, QuotaCounter.__table__)
_MARKS: Final = cast(Table, SendMark.__table__)
# A send mark row created only to be locked: "long ago", so it never delays anything.
NEVER: Final = datetime(1970, 1, 1, tzinfo=UTC)

_COUNTER_UPDATE: Final = (
    update(_COUNTERS)
    .where(
        _COUNTERS.c.service_id == bindparam("b_service"),
        _COUNTERS.c.window == bindparam("b_window"),
        _COUNTERS.c.count + bindparam("b_used") <= bindparam("b_limit"),
    )
    .values(count=_COUNTERS.c.count + bindparam("b_used"))
)
_MARK_UPDATE: Final = (
    update(_MARKS)
    .where(_MARKS.c.service_id == bindparam("b_service"), _MARKS.c.scope == bindparam("b_scope"))
    .values(last_at=bindparam("b_last"))
)


class BatchConflict(Exception):
    """A locked row was not as read: a bug, never an answer; the batch is rolled back."""


def _insert(session: AsyncSession) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


async def accept_batch(
    session: AsyncSession, requests: Sequence[BulkRequest], nows: Sequence[datetime]
) -> list[SendResult]:
    """Decide and write every request in the caller's transaction (which must commit for the
    accepted ones to stand, and must roll back entirely if this raises)."""
    batch = BatchDecision(requests, nows)
    services = await _load_services(session, batch.service_ids())
    opted_out = await _opted_out(session, batch.recipients())
    earlier = await _earlier(session, batch.idempotency_keys())
    routes, operators = await _routing(session)
    batch.check(services, opted_out, earlier, routes, operators)
    counters = await _lock_counters(session, batch.counter_keys())
    marks = await _lock_marks(session, batch.mark_keys())
    funds = await _lock_merchants(session, batch.merchant_ids())
    batch.decide(counters, marks, funds)
    return batch.finish(await _write(session, batch))


# --- reads ------------------------------------------------------------------------------------


async def _load_services(session: AsyncSession, ids: list[int]) -> dict[int, ServiceView]:
    rows = await session.execute(
        select(
            Service.id,
            Service.type,
            Service.merchant_id,
            Service.status,
            Service.ip_allowlist,
            Service.settings,
            Merchant.status.label("merchant_status"),
            Merchant.currency,
            Merchant.timezone,
        )
        .join(Merchant, Merchant.id == Service.merchant_id)
        .where(Service.id.in_(ids))
    )
    return {
        row.id: ServiceView.of(
            kind=row.type,
            merchant_id=row.merchant_id,
            status=row.status,
            ip_allowlist=row.ip_allowlist,
            settings=row.settings,
            merchant_status=row.merchant_status,
            currency=row.currency,
            timezone=row.timezone,
        )
        for row in rows.all()
    }


async def _opted_out(session: AsyncSession, pairs: list[tuple[int, str]]) -> set[tuple[int, str]]:
    if not pairs:
        return set()
    rows = await session.execute(
        select(OptOut.service_id, OptOut.msisdn).where(
            OptOut.service_id.in_(sorted({s for s, _ in pairs})),
            OptOut.msisdn.in_(sorted({m for _, m in pairs})),
        )
    )
    return {(row.service_id, row.msisdn) for row in rows.all()} & set(pairs)


async def _earlier(
    session: AsyncSession, keys: list[tuple[int, str]]
) -> dict[tuple[int, str], Accepted]:
    if not keys:
        return {}
    rows = await session.execute(
        select(
            MtMessage.id,
            MtMessage.service_id,
            MtMessage.idempotency_key,
            MtMessage.msisdn,
            MtMessage.parts,
            MtMessage.encoding,
            MtMessage.cost_minor,
            MtMessage.currency,
            MtMessage.operator_id,
        ).where(
            MtMessage.service_id.in_(sorted({s for s, _ in keys})),
            MtMessage.idempotency_key.in_(sorted({k for _, k in keys})),
        )
    )
    wanted = set(keys)
    return {
        (row.service_id, row.idempotency_key): Accepted(
            row.id,
            row.msisdn,
            row.parts,
            row.encoding,
            row.cost_minor,
            row.currency,
            row.operator_id,
            duplicate=True,
        )
        for row in rows.all()
        if (row.service_id, row.idempotency_key) in wanted
    }


async def _routing(session: AsyncSession) -> tuple[list[RouteRow], list[tuple[str, str]]]:
    """The whole routing table and the enabled operators: both are small."""
    routes = [
        RouteRow(row.country, row.operator_id, row.priority)
        for row in (
            await session.execute(
                select(Route.country, Route.operator_id, Route.priority)
                .join(Operator, Operator.id == Route.operator_id)
                .where(Operator.enabled.is_(True))
            )
        ).all()
    ]
    operators = [
        (row.id, row.country)
        for row in (
            await session.execute(
                select(Operator.id, Operator.country).where(Operator.enabled.is_(True))
            )
        ).all()
    ]
    return routes, operators


# --- locks ------------------------------------------------------------------------------------


async def _lock_counters(
    session: AsyncSession, keys: list[tuple[int, str]]
) -> dict[tuple[int, str], int]:
    if not keys:
        return {}
    statement = _insert(session)(QuotaCounter).values(
        [{"service_id": s, "window": w, "count": 0} for s, w in keys]
    )
    rows = await session.execute(
        statement.on_conflict_do_update(
            index_elements=["service_id", "window"], set_={"count": QuotaCounter.count}
        ).returning(QuotaCounter.service_id, QuotaCounter.window, QuotaCounter.count)
    )
    # row.count would be tuple.count: read by position.
    return {(row[0], row[1]): int(row[2]) for row in rows.all()}


async def _lock_marks(
    session: AsyncSession, keys: list[tuple[int, str]]
) -> dict[tuple[int, str], datetime]:
    if not keys:
        return {}
    statement = _insert(session)(SendMark).values(
        [{"service_id": s, "scope": scope, "last_at": NEVER} for s, scope in keys]
    )
    rows = await session.execute(
        statement.on_conflict_do_update(
            index_elements=["service_id", "scope"], set_={"last_at": SendMark.last_at}
        ).returning(SendMark.service_id, SendMark.scope, SendMark.last_at)
    )
    return {(row.service_id, row.scope): row.last_at for row in rows.all()}


async def _lock_merchants(session: AsyncSession, ids: list[int]) -> dict[int, tuple[int, int]]:
    """Balance and floor (``-credit``) of every merchant the batch may charge."""
    if not ids:
        return {}
    rows = await session.execute(
        select(Merchant.id, Merchant.balance_minor, Merchant.credit_minor)
        .where(Merchant.id.in_(ids))
        .order_by(Merchant.id)
        .with_for_update()
    )
    return {row.id: (int(row.balance_minor), -int(row.credit_minor)) for row in rows.all()}


# --- writes -----------------------------------------------------------------------------------


async def _write(session: AsyncSession, batch: BatchDecision) -> list[int]:
    """Insert the MT rows, move the counters and marks, charge the merchants; the MT ids."""
    if not batch.mt_rows:
        return []
    connection = await session.connection()
    ids = [
        int(i)
        for i in (
            await connection.execute(
                insert(_MT).returning(_MT.c.id, sort_by_parameter_order=True), batch.mt_rows
            )
        )
        .scalars()
        .all()
    ]
    counter_moves = [
        {"b_service": s, "b_window": w, "b_used": used, "b_limit": limit}
        for s, w, used, limit in batch.counter_moves()
    ]
    if counter_moves:
        moved = await connection.execute(_COUNTER_UPDATE, counter_moves)
        if moved.rowcount not in (-1, len(counter_moves)):
            raise BatchConflict("a quota counter moved under its lock")
    mark_moves = [
        {"b_service": s, "b_scope": scope, "b_last": last} for s, scope, last in batch.mark_moves()
    ]
    if mark_moves:
        await connection.execute(_MARK_UPDATE, mark_moves)
    for charge in batch.charges():
        await charge_merchant_many(
            session,
            merchant_id=charge.merchant_id,
            charges=[
                Charge(f"mt:{ids[position]}", amount, memo)
                for position, amount, memo in charge.entries
            ],
            currency=charge.currency,
            kind=MT_COST_KIND,
            now=charge.at,
        )
    return ids
