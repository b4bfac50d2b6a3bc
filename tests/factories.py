"""Rows for tests, inserted directly: a test of MO intake should not depend on provisioning."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from smsgate.store.models import Merchant, Operator, Service, ServiceShortNumber, ShortNumber

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def add_operator(
    session: AsyncSession,
    operator_id: str = "op-bg",
    *,
    intake_secret: str = "intake-1",
    ip_allowlist: list[str] | None = None,
    **extra: Any,
) -> Operator:
    operator = Operator(
        id=operator_id,
        country="BG",
        kind=extra.pop("kind", "http"),
        host="127.0.0.1",
        port=0,
        system_id="smsgate",
        password="pw",
        tps=100,
        window=10,
        settings=extra.pop("settings", {}),
        intake_secret_hash=hashlib.sha256(intake_secret.encode()).hexdigest(),
        ip_allowlist=ip_allowlist or [],
        created_at=T0,
        updated_at=T0,
        **extra,
    )
    session.add(operator)
    await session.flush()
    return operator


async def add_short_number(
    session: AsyncSession,
    number: str = "1851",
    operator_id: str = "op-bg",
    *,
    price_minor: int = 240,
    default_reply: str = "",
    **extra: Any,
) -> ShortNumber:
    short_number = ShortNumber(
        number=number,
        operator_id=operator_id,
        price_minor=price_minor,
        currency="BGN",
        operator_share_bp=extra.pop("operator_share_bp", 4000),
        merchant_share_bp=extra.pop("merchant_share_bp", 5000),
        default_reply=default_reply,
        created_at=T0,
        updated_at=T0,
        **extra,
    )
    session.add(short_number)
    await session.flush()
    return short_number


async def add_merchant(session: AsyncSession, merchant_id: int = 1, **extra: Any) -> Merchant:
    merchant = Merchant(
        id=merchant_id,
        login=extra.pop("login", f"shop{merchant_id}"),
        password_hash=extra.pop("password_hash", "x"),
        currency="BGN",
        credit_minor=extra.pop("credit_minor", 0),
        balance_minor=0,
        created_at=T0,
        updated_at=T0,
        **extra,
    )
    session.add(merchant)
    await session.flush()
    return merchant


async def add_service(
    session: AsyncSession,
    service_id: int,
    *,
    merchant_id: int = 1,
    type: str = "access_code",
    keyword: str = "KOD",
    short_numbers: list[ShortNumber] | None = None,
    **extra: Any,
) -> Service:
    service = Service(
        id=service_id,
        merchant_id=merchant_id,
        type=type,
        keyword=keyword,
        status=extra.pop("status", "active"),
        ip_allowlist=extra.pop("ip_allowlist", []),
        settings=extra.pop("settings", {}),
        callback_urls=extra.pop("callback_urls", {}),
        callback_method=extra.pop("callback_method", "POST"),
        signing_secret=extra.pop("signing_secret", "whsec-test"),
        created_at=T0,
        updated_at=T0,
        **extra,
    )
    session.add(service)
    await session.flush()
    for short_number in short_numbers or []:
        session.add(ServiceShortNumber(service_id=service.id, short_number_id=short_number.id))
    await session.flush()
    return service
