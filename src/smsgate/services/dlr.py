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


# What a DLR callback calls a state (docs/bulk.md, "DLR callbacks"): "submitted" is the SMSC's
# acceptance of the submit_sm, which merchants know as "accepted".
_CALLBACK_STATUS = {"submitted": "accepted"}


def callback_status(state: str) -> str:
    return _CALLBACK_STATUS.get(state, state)


async def _notify(
    session: AsyncSession, mt: MtMessage, part: MtPart, whole_changed: bool, now: datetime
) -> None:
    """Tell the merchant's DLR URL about a part's new state, and about the message's.

    A one-part message gets one callback per change (``scope=message``). A multipart message
    gets one per part and change (``scope=part``) and, when the parts move the whole message
    to a new state, one more for the message (``scope=message``). Fields: docs/bulk.md.
    """
    if mt.service_id is None or mt.merchant_id is None:
        return
    service = await session.get_one(Service, mt.service_id)
    url = service.callback_urls.get("dlr") or service.settings.get("dlr_url")
    if not url:
        return
    common = {
        "id": str(mt.id),
        "user_id": str(mt.merchant_id),
        "service_id": str(mt.service_id),
        "msisdn": mt.msisdn,
        "parts": str(mt.parts),
        "created_at": mt.created_at.isoformat(),
        "status_at": now.isoformat(),
    }
    events: list[dict[str, str]] = []
    if mt.parts > 1:
        events.append(
            {
                **common,
                "scope": "part",
                "part": str(part.part_no),
                "status": callback_status(part.status),
                "error_code": part.error_code,
                "operator_message_id": part.operator_message_id or "",
                "submitted_at": _iso(part.submitted_at),
                "done_at": _iso(part.done_at),
            }
        )
    if mt.parts == 1 or whole_changed:
        submitted, done = await _message_times(session, mt)
        events.append(
            {
                **common,
                "scope": "message",
                "part": "" if mt.parts > 1 else str(part.part_no),
                "status": callback_status(mt.status),
                "error_code": mt.error_code,
                "operator_message_id": (part.operator_message_id or "") if mt.parts == 1 else "",
                "submitted_at": _iso(submitted),
                "done_at": _iso(done if is_final(mt.status) else None),
            }
        )
    for fields in events:
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


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment is not None else ""


async def _message_times(
    session: AsyncSession, mt: MtMessage
) -> tuple[datetime | None, datetime | None]:
    """When the first part was accepted by the SMSC, and when the last part was done."""
    times = (
        await session.execute(
            select(MtPart.submitted_at, MtPart.done_at).where(MtPart.mt_id == mt.id)
        )
    ).all()
    submitted = [t.submitted_at for t in times if t.submitted_at is not None]
    done = [t.done_at for t in times if t.done_at is not None]
    return (min(submitted) if submitted else None, max(done) if done else None)
