"""The audit log: who changed which configuration entity, when, and what changed.

Secrets never enter it. Callers name changed secrets under ``secrets_changed`` without their
values, and :func:`record` redacts any value kept under a secret's key as a second line of
defence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from smsgate.store.models import AuditLog

# Keys whose values are secrets, wherever they appear in the details.
SECRET_KEYS: Final = frozenset(
    {
        "password",
        "password_hash",
        "api_key",
        "api_key_hash",
        "signing_secret",
        "intake_secret",
        "intake_secret_hash",
        "token",
        "admin_token",
        "psw",
        "apikey",
    }
)
REDACTED: Final = "[redacted]"


def redact(value: Any) -> Any:
    """A copy of ``value`` with the value of every secret key replaced by ``[redacted]``."""
    if isinstance(value, dict):
        return {k: REDACTED if k in SECRET_KEYS else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    at: datetime
    actor: str
    action: str
    entity: str
    entity_id: str
    details: dict[str, Any]


def record(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    entity: str,
    entity_id: str,
    details: dict[str, Any],
    at: datetime,
) -> None:
    """Add one audit row to the caller's transaction."""
    session.add(
        AuditLog(
            at=at,
            actor=actor[:128],
            action=action,
            entity=entity,
            entity_id=entity_id[:64],
            details=redact(details),
        )
    )


async def list_records(
    session: AsyncSession,
    *,
    limit: int = 100,
    before_id: int | None = None,
    entity: str | None = None,
    entity_id: str | None = None,
) -> list[AuditRecord]:
    """Newest first; page with ``before_id`` = the last id of the previous page."""
    query = select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(AuditLog.id < before_id)
    if entity is not None:
        query = query.where(AuditLog.entity == entity)
    if entity_id is not None:
        query = query.where(AuditLog.entity_id == entity_id)
    rows = (await session.scalars(query)).all()
    return [
        AuditRecord(
            id=r.id,
            at=r.at,
            actor=r.actor,
            action=r.action,
            entity=r.entity,
            entity_id=r.entity_id,
            details=dict(r.details),
        )
        for r in rows
    ]
