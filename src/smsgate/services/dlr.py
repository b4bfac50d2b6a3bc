"""Delivery receipts: keep every receipt, match it to the part it reports on, move the message's
state, and tell the merchant.

A receipt can arrive before the submit_sm_resp that tells us the operator's message id
(DESIGN.md §2.2, immediate DLRs). Such a receipt is stored unmatched and applied the moment the
link records the id (``attach_operator_message_id``); it is never dropped or retried on a timer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from smsgate.domain.delivery import aggregate, is_final
from smsgate.metrics import DLR_RECEIVED
from smsgate.services.webhooks import emit
from smsgate.store.models import DeliveryReport, MtMessage, MtPart, Service


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
    DLR_RECEIVED.labels(receipt.operator_id, receipt.state).inc()
    part = (
        await session.execute(
            select(MtPart).where(
                MtPart.operator_id == receipt.operator_id,
                MtPart.operator_message_id == receipt.operator_message_id,
            )
        )
    ).scalar_one_or_none()
    report = DeliveryReport(
        operator_id=receipt.operator_id,
        operator_message_id=receipt.operator_message_id,
        mt_part_id=part.id if part else None,
        state=receipt.state,
        error_code=receipt.error_code,
        received_at=now,
        raw=receipt.raw,
    )
    session.add(report)
    await session.flush()
    if part is None:
        return ReceiptOutcome(report.id, False, None)
    await _apply(session, part, receipt.state, receipt.error_code, now)
    return ReceiptOutcome(report.id, True, part.mt_id)


async def attach_operator_message_id(
    session: AsyncSession, part: MtPart, operator_message_id: str, *, now: datetime
) -> None:
    """Record the id a submit_sm_resp gave a part, then apply receipts that came before it."""
    part.operator_message_id = operator_message_id
    early = (
        await session.execute(
            select(DeliveryReport)
            .where(
                DeliveryReport.operator_id == part.operator_id,
                DeliveryReport.operator_message_id == operator_message_id,
                DeliveryReport.mt_part_id.is_(None),
            )
            .order_by(DeliveryReport.id)
        )
    ).scalars()
    for report in list(early):
        report.mt_part_id = part.id
        await _apply(session, part, report.state, report.error_code, now)


async def _apply(
    session: AsyncSession, part: MtPart, state: str, error_code: str, now: datetime
) -> None:
    if is_final(part.status) or part.status == state:
        return  # a repeated or late receipt never moves a part back
    part.status = state
    part.error_code = error_code
    if is_final(state):
        part.done_at = now
    mt = await session.get_one(MtMessage, part.mt_id)
    parts = (
        await session.execute(select(MtPart).where(MtPart.mt_id == mt.id).order_by(MtPart.part_no))
    ).scalars()
    states = [p.status for p in parts]
    whole = aggregate(states)
    whole_changed = whole != mt.status
    mt.status = whole
    mt.updated_at = now
    if error_code:
        mt.error_code = error_code
    await _notify(session, mt, part, whole_changed, now)


async def _notify(
    session: AsyncSession, mt: MtMessage, part: MtPart, whole_changed: bool, now: datetime
) -> None:
    if mt.service_id is None or mt.merchant_id is None:
        return
    service = await session.get_one(Service, mt.service_id)
    url = service.callback_urls.get("dlr") or service.settings.get("dlr_url")
    if not url:
        return
    fields = {
        "id": str(mt.id),
        "msisdn": mt.msisdn,
        "status": part.status,
        "error_code": part.error_code,
        "part": str(part.part_no),
        "parts": str(mt.parts),
        "message_status": mt.status,
        "scope": "part",
        "submitted_at": part.submitted_at.isoformat() if part.submitted_at else "",
        "at": now.isoformat(),
    }
    await emit(
        session,
        merchant_id=mt.merchant_id,
        service_id=mt.service_id,
        event_type="message.dlr",
        url=str(url),
        method=service.callback_method,
        payload=fields,
        now=now,
    )
    if mt.parts > 1 and whole_changed:
        whole = dict(fields, scope="message", status=mt.status, part="", error_code=mt.error_code)
        await emit(
            session,
            merchant_id=mt.merchant_id,
            service_id=mt.service_id,
            event_type="message.dlr",
            url=str(url),
            method=service.callback_method,
            payload=whole,
            now=now,
        )
