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

import functools
import logging
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any, Final, cast

from sqlalchemy import Table
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
from smsgate.services.mo import Reply, RoutedMo
from smsgate.services.mo_routing import ServiceView
from smsgate.store.ledger import (
    AlsoInsert,
    MoSale,
    book_mo_revenues,
    book_mo_revenues_and_insert,
)
from smsgate.store.models import AccessCode

log = logging.getLogger(__name__)

# Draws before giving up on finding a free code. With the smallest space allowed (4 digits
# from 8 symbols: 4,096 codes) the 20th clash in a row means the space is nearly used up.
MAX_DRAWS: Final = 20


@dataclass(frozen=True, slots=True)
class IssuedCode:
    id: int
    code: str
    state: CodeState


async def issue_codes(
    session: AsyncSession,
    wanted: Sequence[tuple[int, CodeRules, int | None, str]],
    *,
    now: datetime,
    rng: RandomSource | None = None,
    sales: Sequence[MoSale] = (),
) -> list[IssuedCode | None]:
    """Insert a fresh code, unique in its service, for each (service id, rules, MO id,
    msisdn) of ``wanted``, all in one statement; a code that clashes (with a stored one, or
    one drawn for the same batch) is drawn again in the next statement, up to
    :data:`MAX_DRAWS` times. None for a request still clashing then.

    ``sales``: MOs whose revenue to book (``ledger.book_mo_revenues``), with the first
    statement: on PostgreSQL the booking and the codes can go as one statement."""
    issued: list[IssuedCode | None] = [None] * len(wanted)
    states = [rules_.issue(rules, now) for _, rules, _, _ in wanted]
    pending = list(range(len(wanted)))
    connection = await session.connection()
    if not pending:
        await book_mo_revenues(session, sales, now=now)
    for draw in range(MAX_DRAWS):
        if not pending:
            break
        drawn: dict[tuple[int, str], int] = {}
        rows = []
        for index in pending:
            service_id, rules, mo_id, msisdn = wanted[index]
            code = rules_.generate_code(rules, rng)
            if (service_id, code) in drawn:
                continue  # drawn twice in this batch: draws again next time
            drawn[(service_id, code)] = index
            rows.append(_code_row(service_id, code, rules, states[index], mo_id, msisdn, now))
        codes = AlsoInsert(
            _CODES,
            rows,
            columns=_CODE_COLUMNS,
            conflict=("service_id", "code"),
            returning=("service_id", "code", "id"),
        )
        if draw == 0:
            _, inserted = await book_mo_revenues_and_insert(session, sales, now=now, also=codes)
        else:
            inserted = await codes.insert(connection)
        for service_id, code, code_id in inserted:
            index = drawn[(service_id, code)]
            issued[index] = IssuedCode(int(code_id), code, states[index])
        pending = [index for index in pending if issued[index] is None]
    return issued


_CODES: Final = cast(Table, AccessCode.__table__)
_CODE_COLUMNS: Final = (
    "service_id",
    "code",
    "mo_id",
    "msisdn",
    "kind",
    "issued_at",
    "valid_until",
    "lifetime_until",
    "first_used_at",
    "uses_left",
    "uses_count",
    "period_seconds",
    "status",
)


def _code_row(
    service_id: int,
    code: str,
    rules: CodeRules,
    state: CodeState,
    mo_id: int | None,
    msisdn: str,
    now: datetime,
) -> dict[str, Any]:
    period = (
        int(rules.validity.total_seconds())
        if rules.kind is CodeKind.PERIOD_FROM_FIRST_USE and rules.validity is not None
        else None
    )
    return {
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
    }


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


def make_mo_handler(rng: RandomSource | None = None) -> AccessCodeHandler:
    """The ``access_code`` MO handler; tests inject a seeded random source."""
    return AccessCodeHandler(rng)


class AccessCodeHandler:
    """Issues a code for each MO of a batch and queues its reply; books the MOs' revenue.

    Set-wise: the revenue of the batch is one ledger statement (and a balance update per
    merchant), its codes one insert (a few more when draws clash), and the replies are
    queued with the batch's other replies by ``receive_mos``. On PostgreSQL the revenue of
    one merchant's MOs and the first draw of codes are one statement (``issue_codes``).
    """

    def __init__(self, rng: RandomSource | None = None) -> None:
        self._rng = rng

    async def handle_batch(
        self, session: AsyncSession, mos: Sequence[RoutedMo], now: datetime
    ) -> None:
        configs: dict[int, AccessCodeConfig | str] = {}
        issuing: list[tuple[RoutedMo, AccessCodeConfig]] = []
        for mo in mos:
            service = mo.service
            if service.id not in configs:
                configs[service.id] = _config(service)
            config = configs[service.id]
            if isinstance(config, str):
                _reject(mo, config)
            else:
                issuing.append((mo, config))
        issued = await issue_codes(
            session,
            [(mo.service.id, config.rules, mo.mo_id, mo.incoming.msisdn) for mo, config in issuing],
            now=now,
            rng=self._rng,
            sales=[_sale(mo) for mo in mos if _paid(mo)],
        )
        for (mo, config), code in zip(issuing, issued, strict=True):
            if code is None:
                log.error("service %s: no free access code left", mo.service.id)
                _reject(mo, "code space exhausted")
            else:
                _answer(mo, config, code)


def _paid(mo: RoutedMo) -> bool:
    return mo.short_number.price_minor > 0


def _sale(mo: RoutedMo) -> MoSale:
    number = mo.short_number
    return MoSale(
        mo_id=mo.mo_id,
        merchant_id=mo.service.merchant_id,
        gross_minor=number.price_minor,
        currency=number.currency,
        operator_id=mo.incoming.operator_id,
        operator_share_bp=number.operator_share_bp,
        merchant_share_bp=number.merchant_share_bp,
    )


def _config(service: ServiceView) -> AccessCodeConfig | str:
    """The service's access-code settings, or why it issues no code."""
    if service.status != "active":
        return "service disabled"
    try:
        return read_config(service.settings)
    except MisconfiguredService as exc:
        log.error("service %s: unusable access-code settings: %s", service.id, exc)
        return "service misconfigured"


def _answer(mo: RoutedMo, config: AccessCodeConfig, issued: IssuedCode) -> None:
    service = mo.service
    msisdn = mo.incoming.msisdn
    mo.status = "processed"
    mo.details["code_id"] = issued.id
    try:
        text = render_reply(
            config,
            issued.code,
            issued.state,
            service=service.keyword,
            msisdn=msisdn,
            tz=_zone(service.merchant_timezone),
        )
        parts = count_parts(text)
    except DomainError as exc:
        log.error("service %s: reply cannot be rendered: %s", service.id, exc)
        mo.details["reply"] = f"not sent: {exc}"
        return
    if parts > config.max_replies_per_mo:
        # Provisioning refuses such templates (worst case); only a value longer than its worst
        # case (a service name changed since) can get here. The code exists and is checkable.
        log.error(
            "service %s: reply needs %d SMS, max_replies_per_mo is %d",
            service.id,
            parts,
            config.max_replies_per_mo,
        )
        limit = config.max_replies_per_mo
        mo.details["reply"] = f"not sent: needs {parts} SMS, at most {limit}"
        return
    mo.reply = Reply(
        text,
        merchant_id=service.merchant_id,
        service_id=service.id,
        idempotency_key=f"code-reply:{mo.mo_id}",
        details={"code_id": issued.id},
        mt_id_key="reply_mt_id",
    )


def _reject(mo: RoutedMo, reason: str) -> None:
    mo.status = "rejected"
    mo.details["reason"] = reason
    if mo.short_number.default_reply:
        mo.reply = Reply(mo.short_number.default_reply)


@functools.lru_cache(maxsize=256)
def _zone(name: str) -> tzinfo:
    try:
        return zoneinfo.ZoneInfo(name or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return UTC
