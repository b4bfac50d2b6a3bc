"""The claim statements of a link's submitter (``submitter.py``): due ``queued`` MTs of its
operator marked ``submitting``, and those a dead owner left ``submitting`` marked ``unknown``.

Claiming marks rows ``submitting`` in one statement (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL; on SQLite, one statement over a JSON array: ``sqlite_batches.py``). Only the owner
of the operator's bind claims its MTs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import Table, and_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from smsgate.links import sqlite_batches
from smsgate.links.pdus import ClaimedMt
from smsgate.store.models import MtMessage, MtPart

_MT = cast(Table, MtMessage.__table__)


async def mark_interrupted(
    sessions: async_sessionmaker[AsyncSession], operator_id: str, now: datetime
) -> int:
    """Mark the operator's MTs left ``submitting`` as ``unknown``; returns how many."""
    async with sessions() as session, session.begin():
        result = await session.execute(
            update(MtMessage)
            .where(MtMessage.operator_id == operator_id, MtMessage.status == "submitting")
            .values(status="unknown", error_code="interrupted", updated_at=now)
            .execution_options(synchronize_session=False)
        )
    return int(getattr(result, "rowcount", 0) or 0)


async def claim(
    sessions: async_sessionmaker[AsyncSession], operator_id: str, now: datetime, limit: int
) -> list[ClaimedMt]:
    """Up to ``limit`` due queued MTs of the operator, marked ``submitting``, by id."""
    mt = _MT.c
    candidates = (
        select(mt.id)
        .where(mt.operator_id == operator_id, mt.status == "queued", mt.next_attempt_at <= now)
        .order_by(mt.next_attempt_at, mt.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    statement = (
        update(_MT)
        .where(mt.id.in_(candidates.scalar_subquery()))
        .values(status="submitting", attempts=mt.attempts + 1, updated_at=now)
        .returning(mt.id, mt.msisdn, mt.sender, mt.text, mt.encoding, mt.attempts)
    )
    async with sessions() as session, session.begin():
        # Core on the connection: the ORM's UPDATE ... RETURNING costs more than SQLite.
        connection = await session.connection()
        rows: Sequence[Any]
        if connection.dialect.name == "sqlite":
            rows = await sqlite_batches.claim(connection, operator_id, now, limit)
        else:
            rows = (await connection.execute(statement)).all()
        retried = [row[0] for row in rows if row[5] > 1]
        done = await _accepted_parts(session, retried) if retried else {}
    claimed = [
        ClaimedMt(mt_id, msisdn, sender, text, encoding, attempts, _done(done, mt_id))
        for mt_id, msisdn, sender, text, encoding, attempts in rows
    ]
    claimed.sort(key=lambda item: item.id)
    return claimed


async def _accepted_parts(session: AsyncSession, mt_ids: list[int]) -> dict[int, set[int]]:
    """Part numbers of these MTs that an SMSC accepted in earlier attempts; the rows of the
    parts still to send move from ``queued`` to ``submitting`` with their MT."""
    await session.execute(
        update(MtPart)
        .where(MtPart.mt_id.in_(mt_ids), MtPart.status == "queued")
        .values(status="submitting")
        .execution_options(synchronize_session=False)
    )
    rows = await session.execute(
        select(MtPart.mt_id, MtPart.part_no).where(
            and_(MtPart.mt_id.in_(mt_ids), MtPart.status.not_in(("submitting", "failed")))
        )
    )
    done: dict[int, set[int]] = {}
    for mt_id, part_no in rows:
        done.setdefault(mt_id, set()).add(part_no)
    return done


def _done(done: dict[int, set[int]], mt_id: int) -> frozenset[int]:
    parts = done.get(mt_id)
    return frozenset(parts) if parts else _NOTHING


_NOTHING: Final[frozenset[int]] = frozenset()
