"""Receiving an MO: store it once, route it to its service, let the service act, all in one
transaction.

The caller (the SMPP link or the HTTP intake) acknowledges the operator only after the
transaction that runs ``receive_mo`` has committed: DESIGN.md §2.1, nothing accepted is lost.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from smsgate.domain import routing
from smsgate.metrics import MO_RECEIVED
from smsgate.services.mt import queue_mt
from smsgate.store.conflicts import insert_if_absent
from smsgate.store.models import MoMessage, Service, ServiceShortNumber, ShortNumber


@dataclass(frozen=True)
class IncomingMo:
    """An MO as an operator hands it over, before we have stored it."""

    operator_id: str
    operator_message_id: str
    short_number: str
    msisdn: str
    text: str
    kind: str = "sms"  # sms | call
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MoOutcome:
    mo_id: int
    duplicate: bool
    status: str
    service_id: int | None


@dataclass(frozen=True)
class MoContext:
    """What a service's MO handler gets besides the stored MO and the service."""

    short_number: ShortNumber | None
    now: datetime


# A service type's reaction to an MO routed to it (issue a code, open a session, ...). It runs
# inside the MO's transaction and must not commit.
MoHandler = Callable[[AsyncSession, MoMessage, Service, MoContext], Awaitable[None]]


class UnknownShortNumber(Exception):
    """The operator sent an MO to a number we have not provisioned on that operator."""


async def receive_mo(
    session: AsyncSession,
    incoming: IncomingMo,
    *,
    now: datetime,
    handlers: Mapping[str, MoHandler],
) -> MoOutcome:
    """Store, route and handle one MO in the caller's transaction; a redelivery is a no-op."""
    short_number = await _short_number(session, incoming.operator_id, incoming.short_number)
    keyword = routing.keyword_of(incoming.text)
    mo_id = await insert_if_absent(
        session,
        MoMessage.__table__,  # type: ignore[arg-type]
        {
            "operator_id": incoming.operator_id,
            "operator_message_id": incoming.operator_message_id,
            "short_number": incoming.short_number,
            "msisdn": incoming.msisdn,
            "text": incoming.text,
            "keyword": keyword,
            "kind": incoming.kind,
            "service_id": None,
            "status": "received",
            "price_minor": short_number.price_minor if short_number else 0,
            "currency": short_number.currency if short_number else "",
            "received_at": now,
            "details": incoming.details,
        },
        ("operator_id", "operator_message_id"),
    )
    if mo_id is None:
        existing = (
            await session.execute(
                select(MoMessage).where(
                    MoMessage.operator_id == incoming.operator_id,
                    MoMessage.operator_message_id == incoming.operator_message_id,
                )
            )
        ).scalar_one()
        MO_RECEIVED.labels(incoming.operator_id, "duplicate").inc()
        return MoOutcome(existing.id, True, existing.status, existing.service_id)

    mo = await session.get_one(MoMessage, mo_id)
    service = await _route(session, short_number, incoming.text) if short_number else None
    if service is None:
        mo.status = "unrouted"
        if short_number is not None and short_number.default_reply:
            await queue_mt(
                session,
                operator_id=incoming.operator_id,
                msisdn=incoming.msisdn,
                sender=incoming.short_number,
                text=short_number.default_reply,
                mo_id=mo.id,
                now=now,
            )
    else:
        mo.service_id = service.id
        mo.status = "routed"
        handler = handlers.get(service.type)
        if handler is not None:
            await handler(session, mo, service, MoContext(short_number=short_number, now=now))
    MO_RECEIVED.labels(incoming.operator_id, mo.status).inc()
    return MoOutcome(mo.id, False, mo.status, mo.service_id)


async def _short_number(session: AsyncSession, operator_id: str, number: str) -> ShortNumber | None:
    result = await session.execute(
        select(ShortNumber).where(
            ShortNumber.operator_id == operator_id, ShortNumber.number == number
        )
    )
    return result.scalar_one_or_none()


async def _route(session: AsyncSession, short_number: ShortNumber, text: str) -> Service | None:
    rows = (
        await session.execute(
            select(Service)
            .join(ServiceShortNumber, ServiceShortNumber.service_id == Service.id)
            .where(ServiceShortNumber.short_number_id == short_number.id)
        )
    ).scalars()
    candidates = {service.id: service for service in rows}
    chosen = routing.pick_service(
        (
            routing.RouteCandidate(short_number.number, service.keyword, service.id)
            for service in candidates.values()
        ),
        short_number.number,
        text,
    )
    return candidates[chosen] if chosen is not None else None
