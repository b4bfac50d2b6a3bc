"""The sweep of early receipts: stored receipts still unmatched whose part has been written
since, applied by the rules of any receipt (services/dlr.py).

A receipt that arrives before its part's operator message id is written is stored unmatched.
The link that writes the part applies the receipts its own receiver stored
(``apply_early_receipts``); a receipt that came another way (the HTTP intake, another process's
link, a process since restarted) is applied here, by the worker's periodic sweep
(worker/receipt_sweep.py). Whichever comes first applies it; the other no longer sees it
unmatched.

Bounded: only receipts received since ``since`` are looked at, through the index on
``(mt_part_id, received_at)`` (migration 0007), which finds the unmatched ones of the window
without reading older ones; the join to ``mt_parts`` is one index look-up per such receipt.
A receipt for a message never sent (or whose submit outcome a crash lost) stays unmatched,
and drops out of the sweep when it leaves the window.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from smsgate.services.dlr import StoredReport, apply_stored_reports
from smsgate.store.models import DeliveryReport, MtMessage, MtPart

_REPORTS = cast(Table, DeliveryReport.__table__)
_PARTS = cast(Table, MtPart.__table__)
_MT = cast(Table, MtMessage.__table__)

BATCH: Final = 500  # reports per transaction
MAX_BATCHES: Final = 20  # per sweep: the next sweep takes the rest

_WAITING = (
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
    .where(_REPORTS.c.mt_part_id.is_(None), _REPORTS.c.received_at >= bindparam("since"))
    .order_by(_REPORTS.c.id)
    .limit(bindparam("limit"))
)
# PostgreSQL: the reports, their parts and messages are locked, and rows another transaction
# holds are skipped, not waited for. Two sweeps thus never apply one report, nor change one
# message at once; a part or message the link is changing is left to the next sweep (waiting
# for it could deadlock with the link, which changes parts before messages). SQLite ignores
# FOR UPDATE: its transactions take the write lock at BEGIN, one at a time.
_WAITING_LOCKED = _WAITING.with_for_update(skip_locked=True, of=[_REPORTS, _PARTS, _MT])


async def apply_waiting_receipts(
    session: AsyncSession, *, since: datetime, now: datetime, limit: int = BATCH
) -> tuple[int, bool]:
    """Apply, in the caller's transaction, up to ``limit`` unmatched receipts received since
    ``since`` whose part now exists, oldest first. Returns how many were applied and whether
    the batch was full (more may be waiting)."""
    connection = await session.connection()
    query = _WAITING if connection.dialect.name == "sqlite" else _WAITING_LOCKED
    rows = (await connection.execute(query, {"since": since, "limit": limit})).all()
    if not rows:
        return 0, False
    reports = [StoredReport(int(r[0]), r[1], r[2], r[3], r[4]) for r in rows]
    applied = await apply_stored_reports(session, reports, now=now)
    return applied, len(rows) >= limit


__all__ = ["BATCH", "MAX_BATCHES", "apply_waiting_receipts"]
