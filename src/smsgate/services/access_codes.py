"""Issuing an access code for a paid MO (seed 000): the MO handler of ``access_code`` services.

It runs inside the MO's transaction (services/mo.py), so the code, the MO, the reply MT (the
operator link's outbox entry) and the ledger entries commit together or not at all; an MO
delivered twice is stored once (services/mo.py), so it never yields a second code.

- The code is drawn with ``secrets`` from an alphabet without look-alike characters
  (domain/access_codes.py) and inserted under the unique key (service, code); a clash, which
  the code space makes rare, draws again.
- The reply is the service's template rendered with the code's terms. ``max_replies_per_mo``
  is the most SMS the reply to one MO may take: the template is checked against it when it
  is provisioned (worst case), and a reply that would still exceed it is not sent.
- The MO's price is booked in the ledger for the service's merchant.
- A disabled service issues no code: the MO is kept as ``rejected`` and the short number's
  default reply, if any, is sent instead.
"""

from __future__ import annotations

import logging
import zoneinfo
from datetime import UTC, datetime, tzinfo
from typing import Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from smsgate.domain import access_codes as rules_
from smsgate.domain import templates
from smsgate.domain.access_codes import CodeKind, CodeRules, CodeState, RandomSource
from smsgate.domain.errors import DomainError
from smsgate.domain.text import count_parts
from smsgate.services.access_code_settings import (
    AccessCodeConfig,
    MisconfiguredService,
    read_config,
)
from smsgate.services.mo import MoContext, MoHandler
from smsgate.services.mt import queue_mt
from smsgate.store.conflicts import insert_if_absent
from smsgate.store.ledger import book_mo_revenue
from smsgate.store.models import AccessCode, Merchant, MoMessage, Service

log = logging.getLogger(__name__)

# Draws before giving up on finding a free code. With the smallest space allowed (4 digits
# from 8 symbols: 4,096 codes) the 20th clash in a row means the space is nearly used up.
MAX_DRAWS: Final = 20


class CodeSpaceExhausted(Exception):
    """No free code could be drawn: the service's code space is (nearly) used up."""


async def issue_code(
    session: AsyncSession,
    *,
    service_id: int,
    rules: CodeRules,
    now: datetime,
    mo_id: int | None = None,
    msisdn: str = "",
    rng: RandomSource | None = None,
) -> tuple[int, str, CodeState]:
    """Insert a fresh code unique in the service; return its id, text and state."""
    state = rules_.issue(rules, now)
    period = (
        int(rules.validity.total_seconds())
        if rules.kind is CodeKind.PERIOD_FROM_FIRST_USE and rules.validity is not None
        else None
    )
    for _ in range(MAX_DRAWS):
        code = rules_.generate_code(rules, rng)
        code_id = await insert_if_absent(
            session,
            AccessCode.__table__,  # type: ignore[arg-type]
            {
                "service_id": service_id,
                "code": code,
                "mo_id": mo_id,
                "msisdn": msisdn,
                "kind": state.kind.value,
                "issued_at": now,
                "valid_until": state.valid_until,
                "lifetime_until": state.lifetime_until,
                "first_used_at": None,
                "uses_left": state.uses_left,
                "uses_count": 0,
                "period_seconds": period,
                "status": rules_.CodeStatus.ACTIVE.value,
            },
            ("service_id", "code"),
        )
        if code_id is not None:
            return int(code_id), code, state
    raise CodeSpaceExhausted(f"service {service_id}: {MAX_DRAWS} draws all clashed")


def reply_values(
    code: str, state: CodeState, rules: CodeRules, *, service: str, msisdn: str, tz: tzinfo
) -> dict[str, str]:
    """The values of the reply template's placeholders (domain/templates.py)."""
    validity = rules.validity if rules.validity is not None else rules.lifetime
    return {
        "code": code,
        "valid_until": templates.format_valid_until(rules_.expires_at(state), tz),
        "uses": str(rules.uses) if rules.uses is not None else "",
        "validity_minutes": (
            str(int(validity.total_seconds()) // 60) if validity is not None else ""
        ),
        "service": service,
        "msisdn": "".join(c for c in msisdn if c.isdigit()),
    }


def render_reply(
    config: AccessCodeConfig,
    code: str,
    state: CodeState,
    *,
    service: str,
    msisdn: str,
    tz: tzinfo,
) -> str:
    template = templates.parse_template(config.reply_template)
    values = reply_values(code, state, config.rules, service=service, msisdn=msisdn, tz=tz)
    return templates.render(template, values)


def make_mo_handler(rng: RandomSource | None = None) -> MoHandler:
    """The ``access_code`` MO handler; tests inject a seeded random source."""

    async def handle(
        session: AsyncSession, mo: MoMessage, service: Service, ctx: MoContext
    ) -> None:
        await handle_mo(session, mo, service, ctx, rng=rng)

    return handle


async def handle_mo(
    session: AsyncSession,
    mo: MoMessage,
    service: Service,
    ctx: MoContext,
    *,
    rng: RandomSource | None = None,
) -> None:
    """Issue a code for ``mo`` and queue the reply; book the MO's revenue. Never commits."""
    await _book_revenue(session, mo, service, ctx)
    if service.status != "active":
        await _reject(session, mo, ctx, "service disabled")
        return
    try:
        config = read_config(service.settings or {})
    except MisconfiguredService as exc:
        log.error("service %s: unusable access-code settings: %s", service.id, exc)
        await _reject(session, mo, ctx, "service misconfigured")
        return
    try:
        code_id, code, state = await issue_code(
            session,
            service_id=service.id,
            rules=config.rules,
            now=ctx.now,
            mo_id=mo.id,
            msisdn=mo.msisdn,
            rng=rng,
        )
    except CodeSpaceExhausted:
        log.error("service %s: no free access code left", service.id)
        await _reject(session, mo, ctx, "code space exhausted")
        return
    # Only {valid_until} needs the merchant's time zone: spare the query otherwise.
    needs_zone = "{valid_until}" in config.reply_template
    tz = await _merchant_zone(session, service.merchant_id) if needs_zone else UTC
    try:
        text = render_reply(config, code, state, service=service.keyword, msisdn=mo.msisdn, tz=tz)
        parts = count_parts(text)
    except DomainError as exc:
        log.error("service %s: reply cannot be rendered: %s", service.id, exc)
        mo.status = "processed"
        mo.details = {**(mo.details or {}), "code_id": code_id, "reply": f"not sent: {exc}"}
        return
    details = {**(mo.details or {}), "code_id": code_id}
    if parts > config.max_replies_per_mo:
        # Provisioning refuses such templates (worst case); only a value longer than its worst
        # case (a service name changed since) can get here. The code exists and is checkable.
        log.error(
            "service %s: reply needs %d SMS, max_replies_per_mo is %d",
            service.id,
            parts,
            config.max_replies_per_mo,
        )
        details["reply"] = f"not sent: needs {parts} SMS, at most {config.max_replies_per_mo}"
    else:
        mt = await queue_mt(
            session,
            operator_id=mo.operator_id,
            msisdn=mo.msisdn,
            sender=mo.short_number,
            text=text,
            now=ctx.now,
            merchant_id=service.merchant_id,
            service_id=service.id,
            mo_id=mo.id,
            idempotency_key=f"code-reply:{mo.id}",
            details={"code_id": code_id},
        )
        details["reply_mt_id"] = mt.id
    mo.status = "processed"
    mo.details = details


async def _book_revenue(
    session: AsyncSession, mo: MoMessage, service: Service, ctx: MoContext
) -> None:
    short_number = ctx.short_number
    if short_number is None or mo.price_minor <= 0:
        return
    await book_mo_revenue(
        session,
        mo_id=mo.id,
        merchant_id=service.merchant_id,
        gross_minor=mo.price_minor,
        currency=mo.currency,
        operator_id=mo.operator_id,
        operator_share_bp=short_number.operator_share_bp,
        merchant_share_bp=short_number.merchant_share_bp,
        now=ctx.now,
    )


async def _reject(session: AsyncSession, mo: MoMessage, ctx: MoContext, reason: str) -> None:
    mo.status = "rejected"
    mo.details = {**(mo.details or {}), "reason": reason}
    short_number = ctx.short_number
    if short_number is not None and short_number.default_reply:
        await queue_mt(
            session,
            operator_id=mo.operator_id,
            msisdn=mo.msisdn,
            sender=mo.short_number,
            text=short_number.default_reply,
            now=ctx.now,
            mo_id=mo.id,
        )


async def _merchant_zone(session: AsyncSession, merchant_id: int) -> tzinfo:
    name = await session.scalar(select(Merchant.timezone).where(Merchant.id == merchant_id))
    try:
        return zoneinfo.ZoneInfo(name or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return UTC
