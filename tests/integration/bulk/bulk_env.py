"""A gateway with one bulk service, for the bulk tests of every tier."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from tests.factories import add_merchant, add_operator, add_service

from smsgate.domain.money import parse_amount
from smsgate.domain.service_settings import BulkSettings
from smsgate.security import hash_api_key
from smsgate.store.models import Route, ShortNumber

SERVICE_ID = 201
MERCHANT_ID = 1
API_KEY = "k-123"
BG_NUMBER = "359881234567"
# Tuesday 10 March 2026, 12:00 in Sofia (UTC+2 in winter time).
T_START = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)


@dataclass(frozen=True)
class BulkSetup:
    service_id: int = SERVICE_ID
    merchant_id: int = MERCHANT_ID


def bulk_settings(price: str = "0.05", **settings: Any) -> dict[str, Any]:
    """``services.settings`` as provisioning stores it for a bulk service."""
    stored = BulkSettings.model_validate(
        {"sender": "SHOP", "price_per_part": price, **settings}
    ).model_dump(mode="json")
    stored["price_per_part_minor"] = parse_amount(price, "BGN")
    return stored


async def add_bulk_service(
    session: AsyncSession,
    service_id: int = SERVICE_ID,
    *,
    merchant_id: int = MERCHANT_ID,
    price: str = "0.05",
    status: str = "active",
    ip_allowlist: list[str] | None = None,
    dlr_url: str | None = None,
    keyword: str = "",
    short_numbers: list[ShortNumber] | None = None,
    **settings: Any,
) -> None:
    await add_service(
        session,
        service_id,
        merchant_id=merchant_id,
        type="bulk",
        keyword=keyword,
        short_numbers=short_numbers,
        status=status,
        ip_allowlist=ip_allowlist or [],
        settings=bulk_settings(price, **settings),
        callback_urls={"dlr": dlr_url} if dlr_url else {},
    )


async def provision(
    session: AsyncSession,
    *,
    credit_minor: int = 100_000,
    timezone: str = "Europe/Sofia",
    merchant_status: str = "active",
    operator_id: str = "sim-bg",
    **service: Any,
) -> BulkSetup:
    """One SMPP operator for BG, merchant 1 (BGN, API key ``k-123``), bulk service 201."""
    await add_operator(session, operator_id, kind="smpp")
    await add_merchant(
        session,
        MERCHANT_ID,
        credit_minor=credit_minor,
        timezone=timezone,
        status=merchant_status,
        api_key_hash=hash_api_key(API_KEY),
    )
    await add_bulk_service(session, **service)
    await session.flush()
    return BulkSetup()


async def add_route(
    session: AsyncSession, country: str | None, operator_id: str, priority: int = 0
) -> None:
    session.add(Route(country=country, operator_id=operator_id, priority=priority))
    await session.flush()
