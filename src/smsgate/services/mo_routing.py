"""Where MOs go: the short numbers they were sent to and the services on those numbers, read
for a whole batch of MOs in one statement.

Read in the MO's transaction, every batch: a provisioning change committed before the batch
is seen by it, in every process, without a cache to invalidate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from smsgate.domain import routing
from smsgate.store.models import Merchant, Service, ServiceShortNumber, ShortNumber


@dataclass(frozen=True, slots=True)
class ServiceView:
    """A service as MO handling reads it, with its merchant's currency and time zone."""

    id: int
    merchant_id: int
    type: str
    keyword: str
    status: str
    settings: dict[str, Any]
    merchant_currency: str
    merchant_timezone: str


@dataclass(frozen=True, slots=True)
class ShortNumberView:
    """A short number of one operator, with the services on it."""

    id: int
    operator_id: str
    number: str
    price_minor: int
    currency: str
    operator_share_bp: int
    merchant_share_bp: int
    default_reply: str
    services: tuple[ServiceView, ...] = ()
    _candidates: tuple[routing.RouteCandidate, ...] = field(default=(), repr=False)

    def route(self, text: str) -> ServiceView | None:
        """The service an MO with ``text`` to this number belongs to (domain/routing.py)."""
        chosen = routing.pick_service(self._candidates, self.number, text)
        if chosen is None:
            return None
        return next(service for service in self.services if service.id == chosen)


async def load_short_numbers(
    connection: AsyncConnection, numbers: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], ShortNumberView]:
    """The short numbers named by (operator id, number), with their services; numbers we do
    not know are left out."""
    wanted = sorted(set(numbers))
    if not wanted:
        return {}
    rows = await connection.execute(
        _QUERY.where(tuple_(ShortNumber.operator_id, ShortNumber.number).in_(wanted))
    )
    found: dict[tuple[str, str], tuple[Any, list[ServiceView]]] = {}
    for row in rows:
        _, services = found.setdefault((row.operator_id, row.number), (row, []))
        if row.service_id is not None:
            services.append(
                ServiceView(
                    id=row.service_id,
                    merchant_id=row.merchant_id,
                    type=row.type,
                    keyword=row.keyword,
                    status=row.status,
                    settings=row.settings or {},
                    merchant_currency=row.merchant_currency or "",
                    merchant_timezone=row.timezone or "UTC",
                )
            )
    return {key: _view(row, services) for key, (row, services) in found.items()}


def _view(row: Any, services: list[ServiceView]) -> ShortNumberView:
    return ShortNumberView(
        id=row.id,
        operator_id=row.operator_id,
        number=row.number,
        price_minor=row.price_minor,
        currency=row.currency,
        operator_share_bp=row.operator_share_bp,
        merchant_share_bp=row.merchant_share_bp,
        default_reply=row.default_reply or "",
        services=tuple(services),
        _candidates=tuple(
            routing.RouteCandidate(row.number, service.keyword, service.id) for service in services
        ),
    )


_QUERY = (
    select(
        ShortNumber.id,
        ShortNumber.operator_id,
        ShortNumber.number,
        ShortNumber.price_minor,
        ShortNumber.currency,
        ShortNumber.operator_share_bp,
        ShortNumber.merchant_share_bp,
        ShortNumber.default_reply,
        Service.id.label("service_id"),
        Service.merchant_id,
        Service.type,
        Service.keyword,
        Service.status,
        Service.settings,
        Merchant.currency.label("merchant_currency"),
        Merchant.timezone,
    )
    .select_from(ShortNumber)
    .outerjoin(ServiceShortNumber, ServiceShortNumber.short_number_id == ShortNumber.id)
    .outerjoin(Service, Service.id == ServiceShortNumber.service_id)
    .outerjoin(Merchant, Merchant.id == Service.merchant_id)
    .order_by(ShortNumber.id, Service.id)
)
