"""Queueing an MT: the row in status ``queued`` is the operator link's outbox entry, written in
the caller's transaction so the decision to send and the message cannot part."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from smsgate.domain.text import choose_encoding, count_parts
from smsgate.store.models import MtMessage


async def queue_mt(
    session: AsyncSession,
    *,
    operator_id: str,
    msisdn: str,
    sender: str,
    text: str,
    now: datetime,
    merchant_id: int | None = None,
    service_id: int | None = None,
    mo_id: int | None = None,
    cost_minor: int = 0,
    currency: str = "",
    idempotency_key: str | None = None,
    details: dict[str, Any] | None = None,
) -> MtMessage:
    encoding = choose_encoding(text)
    parts = count_parts(text, encoding=encoding)
    mt = MtMessage(
        merchant_id=merchant_id,
        service_id=service_id,
        mo_id=mo_id,
        operator_id=operator_id,
        msisdn=msisdn,
        sender=sender,
        text=text,
        encoding=encoding.value,
        parts=parts,
        status="queued",
        error_code="",
        cost_minor=cost_minor,
        currency=currency,
        idempotency_key=idempotency_key,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
        details=details or {},
    )
    session.add(mt)
    await session.flush()
    return mt
