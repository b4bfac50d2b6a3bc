"""Delivery receipts: keep every receipt, match it to the part it reports on, move the message's
state, and tell the merchant.

A receipt can arrive before the submit_sm_resp that tells us the operator's message id
(DESIGN.md §2.2, immediate DLRs). Such a receipt is stored unmatched and applied the moment the
link records the id (``attach_operator_message_id``); it is never dropped or retried on a timer.
"""

from __future__ import annotations

from collections.abc import Sequence
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
DLR_EVENT = "message.dlr"


def callback_status(state: str) -> str:
    return _CALLBACK_STATUS.get(state, state)


def _dlr_url(service: Service) -> str | None:
    url = service.callback_urls.get("dlr") or service.settings.get("dlr_url")
    return str(url) if url else None


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
    url = _dlr_url(service)
    if url is None:
        return
    parts = list((await session.execute(select(MtPart).where(MtPart.mt_id == mt.id))).scalars())
    events: list[dict[str, str]] = []
    if mt.parts > 1:
        events.append(_part_fields(mt, part, now))
    if mt.parts == 1 or whole_changed:
        events.append(_message_fields(mt, parts, now))
    for fields in events:
        await _emit_dlr(session, service, mt, url, fields, now)


async def notify_submit_outcomes(
    session: AsyncSession, mt_ids: Sequence[int], *, now: datetime
) -> int:
    """Callbacks for MTs whose submit outcome a link has just written: ``accepted`` (the SMSC
    took every part: ``submitted``), ``failed`` (the SMSC refused a part) or ``unknown``.

    Call it in the transaction that wrote the outcomes, after writing their ``mt_parts``.
    MTs of services without a DLR URL cost one query per batch and nothing else. Returns the
    number of callbacks queued.
    """
    queued = 0
    for start in range(0, len(mt_ids), 500):
        chunk = list(mt_ids[start : start + 500])
        rows = (
            await session.execute(
                select(MtMessage, Service)
                .join(Service, Service.id == MtMessage.service_id)
                .where(MtMessage.id.in_(chunk), MtMessage.merchant_id.is_not(None))
            )
        ).all()
        wanted = [(mt, service, _dlr_url(service)) for mt, service in rows]
        wanted = [(mt, service, url) for mt, service, url in wanted if url is not None]
        if not wanted:
            continue
        parts_of: dict[int, list[MtPart]] = {mt.id: [] for mt, _s, _u in wanted}
        for part in (
            await session.execute(select(MtPart).where(MtPart.mt_id.in_(list(parts_of))))
        ).scalars():
            parts_of[part.mt_id].append(part)
        for mt, service, url in wanted:
            parts = sorted(parts_of[mt.id], key=lambda p: p.part_no)
            events: list[dict[str, str]] = []
            if mt.parts > 1:
                events.extend(_part_fields(mt, p, now) for p in parts if p.status != "queued")
            events.append(_message_fields(mt, parts, now))
            for fields in events:
                await _emit_dlr(session, service, mt, str(url), fields, now)
            queued += len(events)
    return queued


def _common_fields(mt: MtMessage, now: datetime) -> dict[str, str]:
    return {
        "id": str(mt.id),
        "user_id": str(mt.merchant_id),
        "service_id": str(mt.service_id),
        "msisdn": mt.msisdn,
        "parts": str(mt.parts),
        "created_at": mt.created_at.isoformat(),
        "status_at": now.isoformat(),
    }


def _part_fields(mt: MtMessage, part: MtPart, now: datetime) -> dict[str, str]:
    return {
        **_common_fields(mt, now),
        "scope": "part",
        "part": str(part.part_no),
        "status": callback_status(part.status),
        "error_code": part.error_code,
        "operator_message_id": part.operator_message_id or "",
        "submitted_at": _iso(part.submitted_at),
        "done_at": _iso(part.done_at),
    }


def _message_fields(mt: MtMessage, parts: Sequence[MtPart], now: datetime) -> dict[str, str]:
    submitted = [p.submitted_at for p in parts if p.submitted_at is not None]
    done = [p.done_at for p in parts if p.done_at is not None]
    only = parts[0] if mt.parts == 1 and len(parts) == 1 else None
    return {
        **_common_fields(mt, now),
        "scope": "message",
        "part": str(only.part_no) if only is not None else "",
        "status": callback_status(mt.status),
        "error_code": mt.error_code,
        "operator_message_id": (only.operator_message_id or "") if only is not None else "",
        "submitted_at": _iso(min(submitted) if submitted else None),
        "done_at": _iso(max(done) if done and is_final(mt.status) else None),
    }


async def _emit_dlr(
    session: AsyncSession,
    service: Service,
    mt: MtMessage,
    url: str,
    fields: dict[str, str],
    now: datetime,
) -> None:
    assert mt.merchant_id is not None
    await emit(
        session,
        merchant_id=mt.merchant_id,
        service_id=mt.service_id,
        event_type=DLR_EVENT,
        url=url,
        method=service.callback_method,
        payload=fields,
        now=now,
    )


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment is not None else ""
