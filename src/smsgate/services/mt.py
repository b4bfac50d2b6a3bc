"""Queueing an MT: the row in status ``queued`` is the operator link's outbox entry, written in
the caller's transaction so the decision to send and the message cannot part."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, NamedTuple, cast

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from smsgate.domain.text import choose_encoding, count_parts
from smsgate.store.models import MtMessage
from smsgate.store.row_sets import insert_rows


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


@dataclass(frozen=True, slots=True)
class NewMt:
    """An MT to queue with others (:func:`queue_replies`); the fields of :func:`queue_mt`."""

    operator_id: str
    msisdn: str
    sender: str
    text: str
    merchant_id: int | None = None
    service_id: int | None = None
    cost_minor: int = 0
    currency: str = ""
    idempotency_key: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


REPLY_COLUMNS: Final = (
    "merchant_id",
    "service_id",
    "mo_id",
    "operator_id",
    "msisdn",
    "sender",
    "text",
    "encoding",
    "parts",
    "status",
    "error_code",
    "cost_minor",
    "currency",
    "idempotency_key",
    "attempts",
    "next_attempt_at",
    "created_at",
    "updated_at",
    "details",
)


class QueuedMt(NamedTuple):
    """A reply as :func:`queue_replies` wrote it; the last five fields are a claim's."""

    mo_id: int
    id: int
    msisdn: str
    sender: str
    text: str
    encoding: str
    attempts: int


QUEUED_RETURNING: Final = ("mo_id", "id", "msisdn", "sender", "text", "encoding", "attempts")


async def queue_replies(
    session: AsyncSession, replies: Mapping[int, NewMt], *, now: datetime, claimed: bool = False
) -> list[QueuedMt]:
    """Queue one MT per MO (``replies`` maps an MO id to its reply) in one statement.

    ``claimed``: the MTs are written claimed already (``submitting``, first attempt), as the
    operator link's claim of an MO's replies would leave them (``links/mo_store.py``), for
    the caller to send: one statement instead of an insert and a claim.
    """
    if not replies:
        return []
    connection = await session.connection()
    inserted = await insert_rows(
        connection,
        MT_TABLE,
        reply_rows(replies, now=now, claimed=claimed),
        columns=REPLY_COLUMNS,
        returning=QUEUED_RETURNING,
    )
    return [QueuedMt(*row) for row in inserted]


def reply_rows(
    replies: Mapping[int, NewMt], *, now: datetime, claimed: bool = False
) -> list[dict[str, Any]]:
    """The rows :func:`queue_replies` inserts (its columns: :data:`REPLY_COLUMNS`)."""
    rows = []
    for mo_id, mt in replies.items():
        encoding = choose_encoding(mt.text)
        rows.append(
            {
                "merchant_id": mt.merchant_id,
                "service_id": mt.service_id,
                "mo_id": mo_id,
                "operator_id": mt.operator_id,
                "msisdn": mt.msisdn,
                "sender": mt.sender,
                "text": mt.text,
                "encoding": encoding.value,
                "parts": count_parts(mt.text, encoding=encoding),
                "status": "submitting" if claimed else "queued",
                "error_code": "",
                "cost_minor": mt.cost_minor,
                "currency": mt.currency,
                "idempotency_key": mt.idempotency_key,
                "attempts": 1 if claimed else 0,
                "next_attempt_at": now,
                "created_at": now,
                "updated_at": now,
                "details": mt.details,
            }
        )
    return rows


MT_TABLE: Final = cast(Table, MtMessage.__table__)
