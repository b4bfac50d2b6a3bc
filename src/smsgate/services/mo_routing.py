"""Where MOs go: the short numbers they were sent to and the services on those numbers, read
for a whole batch of MOs in one statement.

Read in the MO's transaction, every batch: a provisioning change committed before the batch
is seen by it, in every process, without a cache to invalidate.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from sqlalchemy.ext.asyncio import AsyncConnection

from smsgate.domain import routing
from smsgate.store.row_sets import execute


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
    sql = _QUERY_SQLITE if connection.dialect.name == "sqlite" else _QUERY_POSTGRESQL
    return short_number_views(await execute(connection, sql, (json.dumps(wanted),)))


def wanted_parameter(numbers: Iterable[tuple[str, str]]) -> str:
    """The parameter of :func:`routing_sql`: the (operator id, number) pairs wanted."""
    return json.dumps(sorted(set(numbers)))


def routing_sql(parameter: int) -> str:
    """PostgreSQL's query of :func:`load_short_numbers` with its parameter numbered
    ``parameter``, a part of a larger statement; its rows go to :func:`short_number_views`.
    (Ordered there: as a subquery it may lose its ORDER BY.)"""
    return _SELECT + _WANTED_POSTGRESQL.format(parameter)


def short_number_views(rows: Iterable[Sequence[Any]]) -> dict[tuple[str, str], ShortNumberView]:
    """The short numbers and services of the rows of the routing query."""
    found: dict[tuple[str, str], tuple[_Row, list[ServiceView]]] = {}
    ordered = sorted(
        (_Row(*row) for row in rows),
        key=lambda row: (row.id, row.service_id is None, row.service_id or 0),
    )
    for row in ordered:
        _, services = found.setdefault((row.operator_id, row.number), (row, []))
        if row.service_id is not None:
            services.append(
                ServiceView(
                    id=row.service_id,
                    merchant_id=row.merchant_id,
                    type=row.type,
                    keyword=row.keyword,
                    status=row.status,
                    settings=_json(row.settings),
                    merchant_currency=row.merchant_currency or "",
                    merchant_timezone=row.timezone or "UTC",
                )
            )
    return {key: _view(row, services) for key, (row, services) in found.items()}


class _Row(NamedTuple):
    id: int
    operator_id: str
    number: str
    price_minor: int
    currency: str
    operator_share_bp: int
    merchant_share_bp: int
    default_reply: str | None
    service_id: int | None
    merchant_id: int
    type: str
    keyword: str
    status: str
    settings: Any
    merchant_currency: str | None
    timezone: str | None


def _json(value: Any) -> dict[str, Any]:
    # Driver SQL gives a JSON column as the driver reads it: text on SQLite.
    if isinstance(value, str):
        value = json.loads(value)
    return value if isinstance(value, dict) else {}


def _view(row: _Row, services: list[ServiceView]) -> ShortNumberView:
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


_SELECT: Final = (
    "SELECT sn.id, sn.operator_id, sn.number, sn.price_minor, sn.currency, "
    "sn.operator_share_bp, sn.merchant_share_bp, sn.default_reply, s.id, s.merchant_id, s.type, "
    "s.keyword, s.status, s.settings, m.currency, m.timezone "
    "FROM short_numbers AS sn "
    "LEFT JOIN service_short_numbers AS ssn ON ssn.short_number_id = sn.id "
    "LEFT JOIN services AS s ON s.id = ssn.service_id "
    "LEFT JOIN merchants AS m ON m.id = s.merchant_id "
    "WHERE (sn.operator_id, sn.number) IN "
)
# The wanted (operator, number) pairs are one JSON parameter: [[operator, number], ...].
# (Constants joined: nothing from outside is spliced into the SQL.)
_QUERY_SQLITE: Final = (
    _SELECT + "(SELECT value ->> 0, value ->> 1 FROM json_each(?)) ORDER BY sn.id, s.id"  # noqa: S608
)
_WANTED_POSTGRESQL: Final = (
    "(SELECT pair ->> 0, pair ->> 1 FROM json_array_elements(${}::json) AS pair)"
)
_QUERY_POSTGRESQL: Final = _SELECT + _WANTED_POSTGRESQL.format(1) + " ORDER BY sn.id, s.id"
