"""The sweep of early receipts: stored receipts still unmatched whose part has been written
since, applied by the rules of any receipt (services/dlr.py).

A receipt that arrives before its part's operator message id is written is stored unmatched.
The link that writes the part applies the receipts its own receiver stored
(``apply_early_receipts``); a receipt that came another way (the HTTP intake, another process's
link, a process since restarted) is applied here, by the worker's periodic sweep
(worker/receipt_sweep.py). Whichever comes first applies it; the other no longer sees it
unmatched.

In two steps, each a statement whose plan cannot go wrong: the ids of the unmatched receipts
received since ``since`` (``waiting_receipts``), through the index on ``(mt_part_id,
received_at)`` (migration 0007), which finds them without reading older ones; then, for those
ids, a batch at a time, the ones whose part exists, locked and applied
(``apply_waiting_receipts``): one index look-up of ``mt_parts`` per receipt. One statement
joining the two let PostgreSQL's generic plan (a prepared statement's plan after five runs)
guess a third of the unmatched receipts in the window, and read the whole of ``mt_parts`` to
hash-join them, at every sweep with any receipt waiting. A receipt for a message never sent
(or whose submit outcome a crash lost) stays unmatched, and drops out of the sweep when it
leaves the window.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final, cast

from sqlalchemy import BigInteger, Table, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from smsgate.services.dlr import StoredReport, apply_stored_reports
from smsgate.store.models import DeliveryReport, MtMessage, MtPart

_REPORTS = cast(Table, DeliveryReport.__table__)
_PARTS = cast(Table, MtPart.__table__)
_MT = cast(Table, MtMessage.__table__)

BATCH: Final = 500  # receipts per transaction

# Receipt order: received_at, then id.
_WAITING_IDS = (
    select(_REPORTS.c.id)
    .where(_REPORTS.c.mt_part_id.is_(None), _REPORTS.c.received_at >= bindparam("since"))
    .order_by(_REPORTS.c.received_at, _REPORTS.c.id)
)

_MATCHED = (
    select(
        _REPORTS.c.id,
        _REPORTS.c.operator_id,
        _REPORTS.c.operator_message_id,
        _REPORTS.c.state,
        _REPORTS.c.error_code,
    )
    .join(
        _PARTS,
        (_PARTS.c.operator_message_id == _REPORTS.c.operator_message_id)
        & (_PARTS.c.operator_id == _REPORTS.c.operator_id),
    )
    .join(_MT, _MT.c.id == _PARTS.c.mt_id)
    .where(_REPORTS.c.mt_part_id.is_(None))
)
# SQLite: its transactions take the write lock at BEGIN, one at a time; no row locks.
_MATCHED_SQLITE = _MATCHED.where(_REPORTS.c.id.in_(bindparam("ids", expanding=True)))
# PostgreSQL: the ids as one array (one statement text whatever their number, and a plan for
# a few rows: look-ups by key). The reports, their parts and messages are locked, and rows
# another transaction holds are skipped, not waited for: two sweeps never apply one report,
# nor change one message at once. A part or message the link is changing is left to the next
# sweep (waiting for it could deadlock with the link, which changes parts before messages).
_MATCHED_POSTGRES = _MATCHED.where(
    _REPORTS.c.id == any_(bindparam("ids", type_=ARRAY(BigInteger)))
).with_for_update(skip_locked=True, of=[_REPORTS, _PARTS, _MT])


async def waiting_receipts(session: AsyncSession, *, since: datetime) -> list[int]:
    """The ids of the unmatched receipts received since ``since``, in receipt order."""
    connection = await session.connection()
    result = await connection.execute(_WAITING_IDS, {"since": since})
    return [int(report_id) for report_id in result.scalars()]


async def apply_waiting_receipts(
    session: AsyncSession, report_ids: Sequence[int], *, now: datetime
) -> int:
    """Apply, in the caller's transaction, those of these receipts (up to ``BATCH``) still
    unmatched whose part now exists, oldest first. Returns how many were applied."""
    if not report_ids:
        return 0
    connection = await session.connection()
    sqlite = connection.dialect.name == "sqlite"
    query = _MATCHED_SQLITE if sqlite else _MATCHED_POSTGRES
    rows = (await connection.execute(query, {"ids": list(report_ids)})).all()
    reports = [StoredReport(int(r[0]), r[1], r[2], r[3], r[4]) for r in rows]
    return await apply_stored_reports(session, reports, now=now)


__all__ = ["BATCH", "apply_waiting_receipts", "waiting_receipts"]
