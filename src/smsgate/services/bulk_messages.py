"""A merchant's message as the REST API shows it: its state, its parts and every delivery
report received for them (the DLR history), oldest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from smsgate.store.models import DeliveryReport, MtMessage, MtPart

__all__ = ["MessageView", "PartView", "ReportView", "load_message"]


@dataclass(frozen=True, slots=True)
class PartView:
    part_no: int
    status: str
    error_code: str
    operator_message_id: str | None
    submitted_at: datetime | None
    done_at: datetime | None


@dataclass(frozen=True, slots=True)
class ReportView:
    part_no: int
    state: str
    error_code: str
    operator_message_id: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class MessageView:
    id: int
    service_id: int | None
    msisdn: str
    sender: str
    text: str
    encoding: str
    parts: int
    status: str
    error_code: str
    cost_minor: int
    currency: str
    operator_id: str
    created_at: datetime
    updated_at: datetime
    part_states: list[PartView]
    reports: list[ReportView]


async def load_message(
    session: AsyncSession, message_id: int, *, merchant_id: int
) -> MessageView | None:
    """The message if it belongs to ``merchant_id`` (None otherwise: no hint it exists)."""
    mt = (
        await session.execute(
            select(MtMessage).where(
                MtMessage.id == message_id, MtMessage.merchant_id == merchant_id
            )
        )
    ).scalar_one_or_none()
    if mt is None:
        return None
    parts = (
        (
            await session.execute(
                select(MtPart).where(MtPart.mt_id == mt.id).order_by(MtPart.part_no)
            )
        )
        .scalars()
        .all()
    )
    numbers = {part.id: part.part_no for part in parts}
    reports = (
        (
            await session.execute(
                select(DeliveryReport)
                .where(DeliveryReport.mt_part_id.in_(list(numbers)))
                .order_by(DeliveryReport.received_at, DeliveryReport.id)
            )
        )
        .scalars()
        .all()
        if numbers
        else []
    )
    return MessageView(
        id=mt.id,
        service_id=mt.service_id,
        msisdn=mt.msisdn,
        sender=mt.sender,
        text=mt.text,
        encoding=mt.encoding,
        parts=mt.parts,
        status=mt.status,
        error_code=mt.error_code,
        cost_minor=mt.cost_minor,
        currency=mt.currency,
        operator_id=mt.operator_id,
        created_at=mt.created_at,
        updated_at=mt.updated_at,
        part_states=[
            PartView(
                p.part_no, p.status, p.error_code, p.operator_message_id, p.submitted_at, p.done_at
            )
            for p in parts
        ],
        reports=[
            ReportView(
                numbers[r.mt_part_id] if r.mt_part_id is not None else 0,
                r.state,
                r.error_code,
                r.operator_message_id,
                r.received_at,
            )
            for r in reports
        ],
    )
