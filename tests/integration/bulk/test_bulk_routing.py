"""Routing MTs: ``[[routes]]`` applied by provisioning, then each message queued for the link
its recipient's country is routed to (explicit route, the country's own operator, default)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx2
import pytest
from sqlalchemy import select

from smsgate.domain.config_errors import ConfigError
from smsgate.domain.provisioning import parse_toml
from smsgate.runtime import Runtime
from smsgate.services.provisioning import apply
from smsgate.services.routes import RouteRow, list_routes
from smsgate.store.models import MtMessage, Operator

NOW = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)

BASE = """
[[operators]]
id = "a1-bg"
country = "BG"
kind = "smpp"
host = "127.0.0.1"
port = 2775
system_id = "gw"

[[operators]]
id = "vivacom-bg"
country = "BG"
kind = "smpp"
host = "127.0.0.1"
port = 2776
system_id = "gw"

[[operators]]
id = "ro-link"
country = "RO"
kind = "smpp"
host = "127.0.0.1"
port = 2777
system_id = "gw"

[[merchants]]
id = 1
login = "shop"
password = "change-me-please"
api_key = "k-123"
currency = "BGN"
credit = "50.00"

[[services]]
id = 201
merchant = 1
type = "bulk"
sender = "SHOP"
price_per_part = "0.05"
"""

ROUTES = """
[[routes]]
country = "BG"
operator = "vivacom-bg"
priority = 1

[[routes]]
country = "BG"
operator = "a1-bg"
priority = 2

[[routes]]
operator = "a1-bg"     # no country: the default route
"""


async def provision(runtime: Runtime, text: str) -> dict[str, tuple[int, int, int]]:
    report = await apply(runtime.sessions, parse_toml(text), actor="test", now=NOW)
    return {k: (v.created, v.updated, v.unchanged) for k, v in report.counts.items()}


async def route_of(client: httpx2.AsyncClient, runtime: Runtime, msisdn: str) -> str:
    response = await client.get(
        "/users/send_bulk.php",
        params={
            "user_id": 1,
            "service_id": 201,
            "msisdn": msisdn,
            "text": "Hi",
            "extended": "yes",
        },
    )
    assert response.text.startswith("MSG_OK:"), response.text
    async with runtime.sessions() as session:
        mt = await session.get_one(MtMessage, int(response.text.split(":")[1]))
    return mt.operator_id


async def test_routes_are_applied_idempotently(runtime: Runtime) -> None:
    assert (await provision(runtime, BASE + ROUTES))["routes"] == (3, 0, 0)
    assert (await provision(runtime, BASE + ROUTES))["routes"] == (0, 0, 3)
    changed = ROUTES.replace("priority = 2", "priority = 0")
    assert (await provision(runtime, BASE + changed))["routes"] == (0, 1, 2)
    async with runtime.sessions() as session:
        routes = await list_routes(session)
    assert routes == [
        RouteRow("BG", "a1-bg", 0),
        RouteRow("BG", "vivacom-bg", 1),
        RouteRow(None, "a1-bg", 0),
    ]


async def test_route_to_an_unknown_operator_is_refused(runtime: Runtime) -> None:
    with pytest.raises(ConfigError) as caught:
        await provision(runtime, BASE + '[[routes]]\ncountry = "DE"\noperator = "nope"\n')
    assert caught.value.lines() == [
        "<config>: routes[0] (country=DE): operator: no operator with id 'nope'"
    ]


async def test_messages_follow_the_routes(runtime: Runtime, client: httpx2.AsyncClient) -> None:
    await provision(runtime, BASE + ROUTES)
    assert await route_of(client, runtime, "359881234567") == "vivacom-bg"  # priority 1
    assert await route_of(client, runtime, "40721234567") == "ro-link"  # RO's own operator
    assert await route_of(client, runtime, "4915112345678") == "a1-bg"  # default route
    async with runtime.sessions() as session, session.begin():
        (await session.get_one(Operator, "vivacom-bg")).enabled = False
    assert await route_of(client, runtime, "359881234567") == "a1-bg"  # next route


async def test_without_routes_a_country_uses_its_own_operator(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    await provision(runtime, BASE)
    assert await route_of(client, runtime, "359881234567") == "a1-bg"  # lowest id
    response = await client.get(
        "/users/send_bulk.php",
        params={"user_id": 1, "service_id": 201, "msisdn": "4915112345678", "text": "Hi"},
    )
    assert response.text == "INVALID_MSISDN"
    async with runtime.sessions() as session:
        assert (await session.execute(select(MtMessage))).scalars().all() != []
