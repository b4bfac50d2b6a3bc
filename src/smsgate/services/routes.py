"""Which operator link carries an MT to a recipient: the routing table (``routes``).

A route names a destination country (ISO 3166, ``None`` for the default route) and the
operator link that carries messages there, with a priority. For a recipient in country C:

1. the enabled operators that a route names for C, lowest ``priority`` first (ties: operator
   id);
2. otherwise the enabled operators whose own ``country`` is C (a link carries its country's
   traffic without a route being written for it), by operator id;
3. otherwise the enabled operators of the default route (country ``None``), as in 1;
4. otherwise none: the message cannot be sent, and the caller refuses it before anything is
   counted or charged.

A recipient whose country is unknown (a non-geographic code) goes to the default route. A
disabled operator is skipped, so disabling a link moves its traffic to the next route instead
of queueing messages that nothing would send. The table is written by provisioning
(``[[routes]]``, docs/provisioning.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from smsgate.store.models import Operator, Route

__all__ = ["HOME_PRIORITY", "RouteChoice", "choose_operator", "list_routes", "pick_route"]

# The priority reported for step 2 (an operator of the recipient's own country).
HOME_PRIORITY: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class RouteChoice:
    operator_id: str
    country: str | None  # the route's country; None when the default route was taken
    priority: int


@dataclass(frozen=True, slots=True)
class RouteRow:
    """A route or an operator as the choice sees them (pure data, for ``pick_route``)."""

    country: str | None
    operator_id: str
    priority: int


def pick_route(
    routes: Sequence[RouteRow], operators: Sequence[tuple[str, str]], country: str | None
) -> RouteChoice | None:
    """The rules of the module docstring on data already loaded.

    ``routes`` and ``operators`` (id, country) hold enabled operators only.
    """
    if country:
        explicit = _best(row for row in routes if row.country == country)
        if explicit is not None:
            return RouteChoice(explicit.operator_id, country, explicit.priority)
        home = sorted(op_id for op_id, op_country in operators if op_country == country)
        if home:
            return RouteChoice(home[0], country, HOME_PRIORITY)
    default = _best(row for row in routes if row.country is None)
    if default is not None:
        return RouteChoice(default.operator_id, None, default.priority)
    return None


def _best(rows: Iterable[RouteRow]) -> RouteRow | None:
    return min(rows, key=lambda row: (row.priority, row.operator_id), default=None)


async def choose_operator(session: AsyncSession, country: str | None) -> RouteChoice | None:
    """The link for a recipient in ``country`` (None: unknown country, default route only).

    One statement: the enabled operators with their routes for ``country`` or the default
    route, and those whose own country is ``country``.
    """
    wanted: ColumnElement[bool] = Route.country.is_(None)
    if country:
        wanted = or_(wanted, Route.country == country)
    candidates = (
        select(Operator.id, Operator.country, Route.country.label("route_country"), Route.priority)
        .outerjoin(Route, and_(Route.operator_id == Operator.id, wanted))
        .where(Operator.enabled.is_(True))
    )
    if country:
        candidates = candidates.where(or_(Route.id.is_not(None), Operator.country == country))
    else:
        candidates = candidates.where(Route.id.is_not(None))
    routes: list[RouteRow] = []
    operators: list[tuple[str, str]] = []
    for row in (await session.execute(candidates)).all():
        if row.priority is not None:
            routes.append(RouteRow(row.route_country, row.id, row.priority))
        operators.append((row.id, row.country))
    return pick_route(routes, operators, country)


async def list_routes(session: AsyncSession) -> list[RouteRow]:
    """Every route written in the table, countries first, then the default routes."""
    rows = (await session.execute(select(Route.country, Route.operator_id, Route.priority))).all()
    return sorted(
        (RouteRow(row.country, row.operator_id, row.priority) for row in rows),
        key=lambda row: (row.country is None, row.country or "", row.priority, row.operator_id),
    )
