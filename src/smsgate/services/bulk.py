"""Accepting a bulk SMS (seed 001): the checks, the quotas, the charge and the MT, in one
transaction.

Order of checks (the first that fails gives the answer; docs/bulk.md):

1. ``BAN_IP_TEMP``      the caller's address is banned (the HTTP layer, before any of this);
2. ``INVALID_INPUT``    a parameter is missing or malformed (the HTTP layer), or there is no
                        bulk service with that ``service_id`` belonging to that ``user_id``;
3. ``INVALID_IP``       the caller's address is not in the service's allowlist;
4. ``SERVICE_DISABLED`` the service or its merchant is disabled;
5. ``INVALID_MSISDN``   the number is not international / not valid, the recipient opted
                        out of the service, or no operator route reaches it;
6. ``INVALID_INPUT``    the text needs more parts than the service's ``max_parts``;
7. ``INVALID_PATTERN``  the text matches none of the service's approved patterns;
8. ``LIMIT_MONTH``, ``LIMIT_WEEK``, ``LIMIT_DAY``   a calendar-window quota in parts; when
                        several are reached the longest-lasting is named (domain/quota.py);
9. ``LIMIT_DELAY``      the minimum interval since the last message has not passed;
10. ``SERVICE_DISABLED`` the merchant cannot pay: the charge would take the balance below
                        ``-credit`` (the REST API says ``insufficient-funds``);
11. ``MSG_OK``          the MT is queued for its operator link and the merchant is charged.

Steps 1-7 only read. Steps 8-11 write (quota counters, the send mark, the MT, the ledger) and
a refusal there leaves writes behind, so every refusal is answered after a rollback of the
transaction (or of the recipient's savepoint): ``send_one`` and ``send_many`` do that. Only a
committed transaction is answered ``MSG_OK`` (DESIGN.md §2.1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, cast

from sqlalchemy import Table, insert, literal, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from smsgate.domain.errors import InvalidMsisdn
from smsgate.domain.msisdn import Msisdn
from smsgate.domain.service_settings import BulkSettings
from smsgate.services import quotas
from smsgate.services.bulk_inputs import MeasuredText, measure_text, parse_number
from smsgate.services.bulk_model import (
    BULK_ACCEPTED,
    BULK_REFUSED,
    LIMIT_REFUSALS,
    MT_COST_KIND,
    OPT_OUT_REFUSALS,
    Accepted,
    BulkRequest,
    Refusal,
    Refused,
    SendResult,
    count_result,
    ip_allowed,
    service_refusal,
    text_matches,
    text_refusal,
)
from smsgate.services.routes import choose_operator
from smsgate.store.ledger import InsufficientFunds, charge_merchant
from smsgate.store.models import Merchant, MtMessage, OptOut, Service

# The names of bulk_model.py are re-exported: callers import the use case's vocabulary here.
__all__ = [
    "BULK_ACCEPTED",
    "BULK_REFUSED",
    "MT_COST_KIND",
    "Accepted",
    "BulkRequest",
    "Refusal",
    "Refused",
    "SendResult",
    "accept",
    "count_result",
    "ip_allowed",
    "send_many",
    "send_one",
    "text_matches",
]


@dataclass(frozen=True, slots=True)
class _Context:
    """What the checks need of the service and its merchant, read in one statement."""

    service_id: int
    merchant_id: int
    currency: str
    timezone: str
    price_per_part_minor: int
    settings: BulkSettings
    opted_out: bool


async def accept(session: AsyncSession, request: BulkRequest, *, now: datetime) -> SendResult:
    """Run the checks and the writes in the caller's transaction; see the module docstring.

    On ``Refused`` the caller must roll back (the writes of steps 8-10 may have happened).
    """
    # The pure checks run first, but their answers wait for their turn in the order above.
    number = parse_number(request.msisdn)
    text = measure_text(request.text)

    found = await _load(session, request, number.digits if isinstance(number, Msisdn) else None)
    if isinstance(found, Refused):
        return found
    settings = found.settings
    if isinstance(number, InvalidMsisdn):
        return Refused(Refusal.INVALID_MSISDN, str(number))
    if request.idempotency_key is not None:
        earlier = await _by_idempotency_key(session, found.service_id, request.idempotency_key)
        if earlier is not None:
            return earlier
    if found.opted_out:
        OPT_OUT_REFUSALS.labels(str(found.service_id)).inc()
        return Refused(Refusal.OPTED_OUT, "The recipient opted out of this service.")
    route = await choose_operator(session, number.region)
    if route is None:
        return Refused(Refusal.NO_ROUTE, f"No operator route reaches {number.region or 'it'}.")
    text_refused = text_refusal(request, text, settings)
    if text_refused is not None:
        return text_refused
    assert isinstance(text, MeasuredText)  # text_refusal refuses every TextError

    limits = quotas.Limits(settings.limit_day, settings.limit_week, settings.limit_month)
    refused = await quotas.consume(
        session,
        service_id=found.service_id,
        parts=text.parts,
        limits=limits,
        now=now,
        timezone=found.timezone,
    )
    if refused is not None:
        period = refused.hit.name.lower()
        return Refused(
            LIMIT_REFUSALS[refused.hit],
            f"The service's {period} limit ({text.parts} part(s) asked) is reached.",
            refused.retry_at,
        )
    scope = number.digits if settings.min_interval_scope == "recipient" else quotas.SERVICE_SCOPE
    if not await quotas.claim_send_slot(
        session,
        service_id=found.service_id,
        scope=scope,
        min_interval_seconds=settings.min_interval_seconds,
        now=now,
    ):
        retry_at = await quotas.next_send_at(
            session,
            service_id=found.service_id,
            scope=scope,
            min_interval_seconds=settings.min_interval_seconds,
        )
        return Refused(
            Refusal.LIMIT_DELAY,
            f"Less than {settings.min_interval_seconds} s since the last message.",
            retry_at,
        )
    cost = found.price_per_part_minor * text.parts
    mt_id = await _insert_mt(
        session,
        found,
        request,
        msisdn=number.digits,
        operator_id=route.operator_id,
        text=text,
        cost=cost,
        now=now,
    )
    if cost > 0:
        try:
            await charge_merchant(
                session,
                merchant_id=found.merchant_id,
                amount_minor=cost,
                currency=found.currency,
                kind=MT_COST_KIND,
                ref=f"mt:{mt_id}",
                now=now,
                memo=f"{text.parts} part(s) to {number.digits}",
            )
        except InsufficientFunds:
            return Refused(
                Refusal.NO_FUNDS, "The merchant's balance and credit do not cover the message."
            )
    return Accepted(
        mt_id, number.digits, text.parts, text.encoding, cost, found.currency, route.operator_id
    )


_MT: Final = cast(Table, MtMessage.__table__)


async def _insert_mt(
    session: AsyncSession,
    found: _Context,
    request: BulkRequest,
    *,
    msisdn: str,
    operator_id: str,
    text: MeasuredText,
    cost: int,
    now: datetime,
) -> int:
    """The MT row in status ``queued``: the operator link's outbox entry (services/mt.py
    writes the same row for replies; a Core statement here, as this is the hot path)."""
    inserted = await session.execute(
        insert(_MT)
        .values(
            merchant_id=found.merchant_id,
            service_id=found.service_id,
            mo_id=None,
            operator_id=operator_id,
            msisdn=msisdn,
            sender=found.settings.sender,
            text=request.text,
            encoding=text.encoding,
            parts=text.parts,
            status="queued",
            error_code="",
            cost_minor=cost,
            currency=found.currency,
            idempotency_key=request.idempotency_key,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
            details={"via": request.via, "client_ip": request.client_ip, **request.details},
        )
        .returning(_MT.c.id)
    )
    return int(inserted.scalar_one())


async def _load(
    session: AsyncSession, request: BulkRequest, msisdn: str | None
) -> _Context | Refused:
    opted_out = (
        select(OptOut.msisdn)
        .where(OptOut.service_id == Service.id, OptOut.msisdn == msisdn)
        .exists()
        if msisdn is not None
        else literal(False)
    )
    row = (
        await session.execute(
            select(
                Service.type,
                Service.merchant_id,
                Service.status,
                Service.ip_allowlist,
                Service.settings,
                Merchant.status.label("merchant_status"),
                Merchant.currency,
                Merchant.timezone,
                opted_out.label("opted_out"),
            )
            .join(Merchant, Merchant.id == Service.merchant_id)
            .where(Service.id == request.service_id)
        )
    ).one_or_none()
    service_refused = service_refusal(request, row)
    if service_refused is not None:
        return service_refused
    assert row is not None  # service_refusal refuses a missing service
    try:
        settings = BulkSettings.from_stored(row.settings)
    except ValueError:
        # Settings that no longer validate (edited by hand): the service cannot run.
        return Refused(Refusal.SERVICE_DISABLED, "The service's settings are invalid.")
    return _Context(
        service_id=request.service_id,
        merchant_id=row.merchant_id,
        currency=row.currency,
        timezone=row.timezone,
        price_per_part_minor=int(row.settings.get("price_per_part_minor") or 0),
        settings=settings,
        opted_out=bool(row.opted_out),
    )


async def _by_idempotency_key(session: AsyncSession, service_id: int, key: str) -> Accepted | None:
    mt = (
        await session.execute(
            select(MtMessage).where(
                MtMessage.service_id == service_id, MtMessage.idempotency_key == key
            )
        )
    ).scalar_one_or_none()
    if mt is None:
        return None
    return Accepted(
        mt.id, mt.msisdn, mt.parts, mt.encoding, mt.cost_minor, mt.currency, mt.operator_id, True
    )


# --- transactions ----------------------------------------------------------------------------


async def send_one(
    sessions: async_sessionmaker[AsyncSession], request: BulkRequest, *, now: datetime
) -> SendResult:
    """One message in its own transaction: committed when accepted, rolled back if not."""
    result: SendResult | None = None
    try:
        async with sessions() as session:
            result = await accept(session, request, now=now)
            if isinstance(result, Accepted):
                await session.commit()
            else:
                await session.rollback()
    except IntegrityError:
        # A concurrent request with the same idempotency key committed first: answer as it
        # was answered. Without a key the conflict is not ours to explain.
        if request.idempotency_key is None:
            raise
        async with sessions() as session:
            result = await _by_idempotency_key(session, request.service_id, request.idempotency_key)
        if result is None:
            raise
    count_result(result, request.via)
    return result


async def send_many(
    sessions: async_sessionmaker[AsyncSession],
    requests: Sequence[BulkRequest],
    *,
    now: datetime | Sequence[datetime],
) -> list[SendResult]:
    """Many messages in one transaction, each in its own savepoint: a refused recipient is
    rolled back alone, and every accepted one commits at once, before anyone is answered.

    ``now`` is one instant for all, or each request's own (when each arrived)."""
    nows = [now] * len(requests) if isinstance(now, datetime) else list(now)
    results: list[SendResult] = []
    async with sessions() as session, session.begin():
        for request, at in zip(requests, nows, strict=True):
            savepoint = await session.begin_nested()
            try:
                result = await accept(session, request, now=at)
            except IntegrityError:
                await savepoint.rollback()
                earlier = None
                if request.idempotency_key is not None:
                    earlier = await _by_idempotency_key(
                        session, request.service_id, request.idempotency_key
                    )
                if earlier is None:
                    raise
                results.append(earlier)
                continue
            if isinstance(result, Refused):
                await savepoint.rollback()
            else:
                await savepoint.commit()
            results.append(result)
    for request, result in zip(requests, results, strict=True):
        count_result(result, request.via)
    return results
