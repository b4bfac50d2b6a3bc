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

import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, cast

from prometheus_client import Counter
from sqlalchemy import Table, insert, literal, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from smsgate.domain.errors import InvalidMsisdn, InvalidPattern, TextError
from smsgate.domain.msisdn import Msisdn, normalize_msisdn
from smsgate.domain.patterns import PatternSet, compile_patterns
from smsgate.domain.service_settings import BulkSettings
from smsgate.domain.text import choose_encoding, count_parts
from smsgate.metrics import REGISTRY
from smsgate.services import quotas
from smsgate.services.routes import choose_operator
from smsgate.store.ledger import InsufficientFunds, charge_merchant
from smsgate.store.models import Merchant, MtMessage, OptOut, Service

__all__ = [
    "MT_COST_KIND",
    "Accepted",
    "BulkRequest",
    "Refusal",
    "Refused",
    "SendResult",
    "accept",
    "send_many",
    "send_one",
    "text_matches",
]

MT_COST_KIND: Final = "mt_cost"

BULK_ACCEPTED = Counter(
    "smsgate_bulk_accepted",
    "Bulk messages accepted, by channel (legacy, rest, campaign)",
    ["via"],
    registry=REGISTRY,
)
BULK_REFUSED = Counter(
    "smsgate_bulk_refused",
    "Bulk messages refused, by reason",
    ["reason"],
    registry=REGISTRY,
)
OPT_OUT_REFUSALS = Counter(
    "smsgate_bulk_opt_out_refusals",
    "Bulk messages refused because the recipient opted out, by service",
    ["service"],
    registry=REGISTRY,
)


class Refusal(StrEnum):
    """Why a message was not accepted; ``word`` is the send_bulk.php answer."""

    BANNED = "banned"
    INVALID_INPUT = "invalid-input"
    UNKNOWN_SERVICE = "unknown-service"
    IP_NOT_ALLOWED = "ip-not-allowed"
    SERVICE_DISABLED = "service-disabled"
    INVALID_MSISDN = "invalid-msisdn"
    OPTED_OUT = "opted-out"
    NO_ROUTE = "no-route"
    TOO_LONG = "too-many-parts"
    PATTERN = "pattern-mismatch"
    LIMIT_DAY = "limit-day"
    LIMIT_WEEK = "limit-week"
    LIMIT_MONTH = "limit-month"
    LIMIT_DELAY = "limit-delay"
    NO_FUNDS = "insufficient-funds"

    @property
    def word(self) -> str:
        return _WORDS[self]


_WORDS: Final = {
    Refusal.BANNED: "BAN_IP_TEMP",
    Refusal.INVALID_INPUT: "INVALID_INPUT",
    Refusal.UNKNOWN_SERVICE: "INVALID_INPUT",
    Refusal.IP_NOT_ALLOWED: "INVALID_IP",
    Refusal.SERVICE_DISABLED: "SERVICE_DISABLED",
    Refusal.INVALID_MSISDN: "INVALID_MSISDN",
    Refusal.OPTED_OUT: "INVALID_MSISDN",
    Refusal.NO_ROUTE: "INVALID_MSISDN",
    Refusal.TOO_LONG: "INVALID_INPUT",
    Refusal.PATTERN: "INVALID_PATTERN",
    Refusal.LIMIT_DAY: "LIMIT_DAY",
    Refusal.LIMIT_WEEK: "LIMIT_WEEK",
    Refusal.LIMIT_MONTH: "LIMIT_MONTH",
    Refusal.LIMIT_DELAY: "LIMIT_DELAY",
    Refusal.NO_FUNDS: "SERVICE_DISABLED",
}
_LIMITS: Final = {
    quotas.LimitHit.DAY: Refusal.LIMIT_DAY,
    quotas.LimitHit.WEEK: Refusal.LIMIT_WEEK,
    quotas.LimitHit.MONTH: Refusal.LIMIT_MONTH,
    quotas.LimitHit.DELAY: Refusal.LIMIT_DELAY,
}


@dataclass(frozen=True, slots=True)
class BulkRequest:
    """One message to one recipient, as a merchant asked for it."""

    service_id: int
    msisdn: str
    text: str
    # The seed's user_id; None when the caller is already known to own the service (the REST
    # API checks the service against the API key's merchant itself).
    user_id: int | None = None
    client_ip: str = ""
    # False for senders that are not network callers (a campaign run on the gateway's host).
    check_ip: bool = True
    idempotency_key: str | None = None
    via: str = "legacy"  # legacy | rest | campaign
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Accepted:
    mt_id: int
    msisdn: str
    parts: int
    encoding: str
    cost_minor: int
    currency: str
    operator_id: str
    duplicate: bool = False  # an earlier request with the same idempotency key


@dataclass(frozen=True, slots=True)
class Refused:
    reason: Refusal
    detail: str = ""
    retry_at: datetime | None = None  # for limits: when the same message could pass

    @property
    def word(self) -> str:
        return self.reason.word


SendResult = Accepted | Refused


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


@dataclass(frozen=True, slots=True)
class _Text:
    encoding: str
    parts: int


async def accept(session: AsyncSession, request: BulkRequest, *, now: datetime) -> SendResult:
    """Run the checks and the writes in the caller's transaction; see the module docstring.

    On ``Refused`` the caller must roll back (the writes of steps 8-10 may have happened).
    """
    # The pure checks run first, but their answers wait for their turn in the order above.
    number: Msisdn | InvalidMsisdn
    try:
        number = normalize_msisdn(request.msisdn)
    except InvalidMsisdn as error:
        number = error
    text: _Text | TextError
    try:
        encoding = choose_encoding(request.text)
        text = _Text(encoding.value, count_parts(request.text, encoding=encoding))
    except TextError as error:
        text = error

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
    if isinstance(text, TextError):
        return Refused(Refusal.INVALID_INPUT, str(text))
    if text.parts > settings.max_parts:
        return Refused(
            Refusal.TOO_LONG,
            f"The text needs {text.parts} parts ({text.encoding}); the service allows "
            f"{settings.max_parts}.",
        )
    if settings.patterns and not text_matches(settings.patterns, request.text):
        return Refused(Refusal.PATTERN, "The text matches none of the approved patterns.")

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
            _LIMITS[refused.hit],
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
    text: _Text,
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
    # An unknown service, another merchant's service and a service of another type get the
    # same answer: nothing tells a caller which service ids exist.
    if (
        row is None
        or row.type != "bulk"
        or (request.user_id is not None and row.merchant_id != request.user_id)
    ):
        return Refused(Refusal.UNKNOWN_SERVICE, "No such bulk service for this merchant.")
    if request.check_ip and not ip_allowed(request.client_ip, row.ip_allowlist):
        return Refused(Refusal.IP_NOT_ALLOWED, "This address may not send for the service.")
    if row.status != "active" or row.merchant_status != "active":
        return Refused(Refusal.SERVICE_DISABLED, "The service is disabled.")
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


def ip_allowed(address: str, allowlist: Sequence[Any]) -> bool:
    """Empty allowlist: any address. Entries are addresses or networks (CIDR)."""
    if not allowlist:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for entry in allowlist:
        try:
            if ip in ipaddress.ip_network(str(entry), strict=False):
                return True
        except ValueError:
            continue
    return False


@functools.lru_cache(maxsize=1024)
def _pattern_set(patterns: tuple[str, ...]) -> PatternSet | None:
    try:
        return compile_patterns(patterns)
    except InvalidPattern:
        return None  # provisioning validates patterns; a broken stored one approves nothing


def text_matches(patterns: Sequence[str], text: str) -> bool:
    """True when the text matches one of the approved patterns (domain/patterns.py), or
    when there are none."""
    compiled = _pattern_set(tuple(patterns))
    return compiled is not None and compiled.matches(text)


# --- transactions ----------------------------------------------------------------------------


def count_result(result: SendResult, via: str) -> None:
    """The accepted/refused metrics for one answered request."""
    if isinstance(result, Accepted):
        if not result.duplicate:
            BULK_ACCEPTED.labels(via).inc()
    else:
        BULK_REFUSED.labels(result.reason.value).inc()


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
