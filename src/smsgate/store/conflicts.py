"""Insert-if-absent on both databases: the primitive that makes redeliveries harmless."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


async def insert_if_absent(
    session: AsyncSession,
    table: Table,
    values: dict[str, Any],
    conflict_columns: Sequence[str],
    returning: str = "id",
) -> Any | None:
    """Insert a row unless one with the same ``conflict_columns`` exists.

    Returns the new row's ``returning`` column, or None when the row already existed. Unlike
    catching IntegrityError, this leaves the surrounding transaction usable on PostgreSQL.
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=list(conflict_columns))
        .returning(table.c[returning])
    )
    result = await session.execute(statement)
    return result.scalar_one_or_none()
