"""Delivery receipts: keep every receipt, match it to the part it reports on, move the message's
state, and tell the merchant.

A receipt can arrive before the submit_sm_resp that tells us the operator's message id
(DESIGN.md §2.2, immediate DLRs). Such a receipt is stored unmatched, never dropped, and applied
once its part is written, exactly once, by whichever comes first: the link that writes the part,
when its own receiver stored the receipt (``apply_early_receipts``, in the transaction that
writes the part), or the worker's sweep of recent unmatched receipts (services/dlr_sweep.py),
which catches those that came through the HTTP intake, another process's link, or before a
restart. Both take the reports they apply under a row lock (PostgreSQL) or SQLite's write lock.

Receipts come in batches (a link hands over everything that arrived while its last
transaction ran), so the work is done set-wise: one lookup of the parts, one insert of the
reports, one update of the parts and one of the messages, one insert of the callbacks and one
of their delivery jobs, whatever the batch's size. The receipts of a batch are applied in
order, in memory, each by the rules of a single receipt (``Batch.apply``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import DateTime, Table, bindparam, select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from smsgate.metrics import DLR_RECEIVED
from smsgate.services.dlr_batch import (
    CHUNK,
    DLR_EVENT,
    Batch,
    callback_status,
    fetch_rows,
    message_fields,
    part_fields,
)
from smsgate.services.webhooks import emit_many
from smsgate.store.models import DeliveryReport, MtMessage, MtPart
from smsgate.store.row_sets import update_rows
from smsgate.store.types import UTCDateTime

_MT = cast(Table, MtMessage.__table__)
_REPORTS = cast(Table, DeliveryReport.__table__)

_UNMATCHED_REPORTS = select(
    _REPORTS.c.id, _REPORTS.c.operator_message_id, _REPORTS.c.state, _REPORTS.c.error_code
).where(
    _REPORTS.c.operator_id == bindparam("operator_id"),
    _REPORTS.c.mt_part_id.is_(None),
    _REPORTS.c.operator_message_id.in_(bindparam("ids", expanding=True)),
)
# On PostgreSQL the reports are locked, and those a sweep holds are left to it: a report is
# applied once (services/dlr_sweep.py). SQLite has no row locks; its write lock does the same.
_UNMATCHED_REPORTS_LOCKED = _UNMATCHED_REPORTS.with_for_update(skip_locked=True)

# The link's own outcomes of a submit, which notify_submit_outcomes reports.
_SUBMIT_OUTCOMES: Final = frozenset({"submitted", "failed", "unknown"})


@dataclass(frozen=True)
class IncomingReceipt:
    operator_id: str
    operator_message_id: str
    state: str  # in our vocabulary: see domain/delivery.py
    error_code: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReceiptOutcome:
    report_id: int
    matched: bool
    mt_id: int | None


async def receive_receipt(
    session: AsyncSession, receipt: IncomingReceipt, *, now: datetime
) -> ReceiptOutcome:
    """Store one receipt and apply it if its part is known; runs in the caller's transaction."""
    return (await receive_receipts(session, [receipt], now=now))[0]


async def receive_receipts(
    session: AsyncSession, receipts: Sequence[IncomingReceipt], *, now: datetime
) -> list[ReceiptOutcome]:
    """Store receipts and apply those whose part is known, in order, in the caller's
    transaction; one outcome per receipt, in order. The caller tells the link about the
    unmatched ones (their part may be written moments later: ``apply_early_receipts``)."""
    if not receipts:
        return []
    for (operator_id, state), count in Counter(
        (receipt.operator_id, receipt.state) for receipt in receipts
    ).items():
        DLR_RECEIVED.labels(operator_id, state).inc(count)
    connection = await session.connection()
    batch = Batch(now)
    await batch.load_parts(
        connection, {(receipt.operator_id, receipt.operator_message_id) for receipt in receipts}
    )
    parts = [batch.part(receipt.operator_id, receipt.operator_message_id) for receipt in receipts]
    report_ids = await _store_reports(
        connection,
        [
            {
                "operator_id": receipt.operator_id,
                "operator_message_id": receipt.operator_message_id,
                "mt_part_id": part.id if part is not None else None,
                "state": receipt.state,
                "error_code": receipt.error_code,
                "received_at": now,
                "raw": receipt.raw,
            }
            for receipt, part in zip(receipts, parts, strict=True)
        ],
    )
    outcomes = []
    for receipt, part, report_id in zip(receipts, parts, report_ids, strict=True):
        if part is None:
            outcomes.append(ReceiptOutcome(report_id, False, None))
            continue
        batch.apply(part, receipt.state, receipt.error_code)
        outcomes.append(ReceiptOutcome(report_id, True, part.mt_id))
    await batch.write(session, connection)
    return outcomes


async def _store_reports(connection: AsyncConnection, rows: list[dict[str, Any]]) -> list[int]:
    """Insert the reports; their ids, in order."""
    if connection.dialect.name != "sqlite":
        # One statement text whatever the batch's size (SQLAlchemy's multi-row VALUES differs
        # with the row count, so PostgreSQL parsed and planned each batch afresh); jsonb, as
        # ``->>`` on json parses the element again for every field taken. The rows
        # are inserted in their order and take ids from the sequence in that order, so the
        # ids sorted are the rows' ids in order.
        packed = json.dumps(
            [[r[name] for name in _REPORT_FIELDS] for r in rows],
            separators=(",", ":"),
        )
        result = await connection.exec_driver_sql(
            _POSTGRES_INSERT_REPORTS, (rows[0]["received_at"], packed)
        )
        return sorted(int(row[0]) for row in result.all())
    # On SQLite the rows go as one JSON parameter (store/row_sets.py), and no RETURNING: its
    # rows are fetched one at a time, each handing the GIL back and forth with the event loop.
    # The ids are consecutive instead: the statement inserts the rows in order, each taking
    # the next rowid, and no other writer can come in between (BEGIN IMMEDIATE).
    received_at = _sqlite_time(connection.dialect, rows[0]["received_at"])
    packed = json.dumps(
        [[r[name] for name in _REPORT_FIELDS] for r in rows],
        separators=(",", ":"),
    )
    result = await connection.exec_driver_sql(_SQLITE_INSERT_REPORTS, (received_at, packed))
    last = result.lastrowid
    assert last is not None
    return list(range(last - len(rows) + 1, last + 1))


_REPORT_FIELDS: Final = (
    "operator_id",
    "operator_message_id",
    "mt_part_id",
    "state",
    "error_code",
    "raw",
)
_SQLITE_INSERT_REPORTS: Final = (
    "INSERT INTO delivery_reports (operator_id, operator_message_id, mt_part_id, state, "
    "error_code, received_at, raw) SELECT r.value ->> 0, r.value ->> 1, r.value ->> 2, "
    "r.value ->> 3, r.value ->> 4, ?, r.value -> 5 FROM json_each(?) AS r"
)


_POSTGRES_INSERT_REPORTS: Final = (
    "INSERT INTO delivery_reports (operator_id, operator_message_id, mt_part_id, state, "
    "error_code, received_at, raw) SELECT r.value ->> 0, r.value ->> 1, "
    "(r.value ->> 2)::bigint, r.value ->> 3, r.value ->> 4, $1, (r.value -> 5)::json "
    "FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS r(value, position) "
    "ORDER BY r.position RETURNING id"
)


def _sqlite_time(dialect: Dialect, moment: datetime) -> Any:
    """``moment`` as SQLAlchemy writes a ``UTCDateTime`` on SQLite."""
    as_text = DateTime().dialect_impl(dialect).bind_processor(dialect)
    assert as_text is not None
    return as_text(UTCDateTime().process_bind_param(moment, dialect))


async def apply_early_receipts(
    session: AsyncSession, operator_id: str, message_ids: Iterable[str], *, now: datetime
) -> int:
    """Apply the stored, unmatched receipts for these operator message ids, whose parts the
    link has just written; oldest receipt first. Returns how many were applied."""
    connection = await session.connection()
    query = _UNMATCHED_REPORTS if connection.dialect.name == "sqlite" else _UNMATCHED_REPORTS_LOCKED
    wanted = list(dict.fromkeys(message_ids))
    reports: list[StoredReport] = []
    for start in range(0, len(wanted), CHUNK):
        rows = await fetch_rows(
            connection, query, {"operator_id": operator_id, "ids": wanted[start : start + CHUNK]}
        )
        reports.extend(StoredReport(row[0], operator_id, row[1], row[2], row[3]) for row in rows)
    return await apply_stored_reports(session, reports, now=now)


@dataclass(frozen=True, slots=True)
class StoredReport:
    """A stored receipt not yet matched to its part."""

    id: int
    operator_id: str
    operator_message_id: str
    state: str
    error_code: str


async def apply_stored_reports(
    session: AsyncSession, reports: Sequence[StoredReport], *, now: datetime
) -> int:
    """Match these unmatched reports to their parts and apply them, oldest first, by the rules
    of a receipt that finds its part (``Batch.apply``); those whose part is still unknown stay
    as they are. The caller has them to itself (locked, or under SQLite's write lock).
    Returns how many were applied."""
    if not reports:
        return 0
    connection = await session.connection()
    ordered = sorted({report.id: report for report in reports}.values(), key=lambda r: r.id)
    batch = Batch(now)
    await batch.load_parts(
        connection, {(report.operator_id, report.operator_message_id) for report in ordered}
    )
    matched = [
        (report, part)
        for report in ordered
        if (part := batch.part(report.operator_id, report.operator_message_id)) is not None
    ]
    if not matched:
        return 0
    await update_rows(
        connection,
        _REPORTS,
        [{"id": report.id, "mt_part_id": part.id} for report, part in matched],
        key="id",
        columns=("mt_part_id",),
    )
    for report, part in matched:
        batch.apply(part, report.state, report.error_code)
    await batch.write(session, connection)
    return len(matched)


async def attach_operator_message_id(
    session: AsyncSession, part: MtPart, operator_message_id: str, *, now: datetime
) -> None:
    """Record the id a submit_sm_resp gave a part, then apply receipts that came before it."""
    part.operator_message_id = operator_message_id
    await session.flush()
    await apply_early_receipts(session, part.operator_id, [operator_message_id], now=now)


async def notify_submit_outcomes(
    session: AsyncSession, mt_ids: Sequence[int], *, now: datetime
) -> int:
    """Callbacks for MTs whose submit outcome a link has just written: ``accepted`` (the SMSC
    took every part: ``submitted``), ``failed`` (the SMSC refused a part) or ``unknown``.

    Call it in the transaction that wrote the outcomes, after writing their ``mt_parts`` and
    before applying receipts that came early (their callbacks follow this one). An MT whose
    state is no longer the link's outcome (a receipt has moved it) is not reported again.
    MTs of services without a DLR URL cost one query per batch and nothing else.
    Returns the number of callbacks queued.
    """
    connection = await session.connection()
    batch = Batch(now)
    await batch.load_messages(connection, list(dict.fromkeys(mt_ids)))
    for mt in sorted(batch.messages.values(), key=lambda mt: mt.id):
        if mt.status not in _SUBMIT_OUTCOMES:
            continue
        parts = mt.sorted_rows()
        if mt.parts > 1:
            for part in parts:
                if part.status in _SUBMIT_OUTCOMES:
                    batch.callback(mt, part_fields(mt, part, now))
        batch.callback(mt, message_fields(mt, parts, now))
    await emit_many(session, batch.events, now=now)
    return len(batch.events)


__all__ = [
    "DLR_EVENT",
    "IncomingReceipt",
    "ReceiptOutcome",
    "StoredReport",
    "apply_early_receipts",
    "apply_stored_reports",
    "attach_operator_message_id",
    "callback_status",
    "notify_submit_outcomes",
    "receive_receipt",
    "receive_receipts",
]
