"""The admin JSON API over ASGI, against SQLite and PostgreSQL."""

from __future__ import annotations

import json
import tomllib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi.openapi.utils import get_openapi
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from smsgate import security
from smsgate.api import admin
from smsgate.api.app import create_api
from smsgate.config import Settings
from smsgate.domain.clock import FakeClock
from smsgate.runtime import Runtime
from smsgate.store import ledger
from smsgate.store.db import make_sessionmaker
from smsgate.store.models import Merchant, Service

SAMPLE = Path(__file__).parents[2] / "data" / "design_sample.toml"
TOKEN = "admin-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def sample() -> dict[str, Any]:
    return tomllib.loads(SAMPLE.read_text())


def make_runtime(engine: AsyncEngine, database_url: str, token: str | None) -> Runtime:
    settings = Settings(
        database_url=database_url, admin_token=SecretStr(token) if token is not None else None
    )
    return Runtime(
        settings=settings, engine=engine, sessions=make_sessionmaker(engine), clock=FakeClock(NOW)
    )


@pytest.fixture
def runtime(engine: AsyncEngine, database_url: str) -> Runtime:
    return make_runtime(engine, database_url, TOKEN)


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=create_api(runtime))
    async with httpx2.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield http


async def provision(
    client: httpx2.AsyncClient, data: dict[str, Any] | None = None
) -> dict[str, Any]:
    response = await client.post("/admin/v1/apply", json=data or sample(), headers=AUTH)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_unset_token_hides_the_admin_api(engine: AsyncEngine, database_url: str) -> None:
    for token in (None, ""):
        api = create_api(make_runtime(engine, database_url, token))
        transport = httpx2.ASGITransport(app=api)
        async with httpx2.AsyncClient(transport=transport, base_url="http://gateway") as http:
            for path in ("/admin/v1/merchants", "/admin/v1/audit"):
                response = await http.get(path, headers={"Authorization": "Bearer "})
                assert response.status_code == 404
                assert response.headers["content-type"] == "application/problem+json"
            response = await http.post("/admin/v1/apply", json=sample(), headers=AUTH)
            assert response.status_code == 404


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
    ],
)
async def test_wrong_or_missing_token_is_401(
    client: httpx2.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get("/admin/v1/merchants", headers=headers)
    assert response.status_code == 401
    assert response.json()["title"] == "Unauthorized"
    # Authentication comes before the body is judged: nothing is revealed about it.
    bad_body = await client.post("/admin/v1/merchants/x/payouts", json=[], headers=headers)
    assert bad_body.status_code == 401


async def test_apply_over_json_is_idempotent(client: httpx2.AsyncClient, runtime: Runtime) -> None:
    body = await provision(client)
    assert body["changed"] is True
    assert body["counts"]["services"] == {"created": 2, "updated": 0, "unchanged": 0}
    assert {"section": "merchants", "id": "1", "action": "create"}.items() <= body["changes"][
        2
    ].items()
    again = await provision(client)
    assert again["changed"] is False
    assert again["changes"] == []
    assert again["counts"]["operators"] == {"created": 0, "updated": 0, "unchanged": 1}
    audit = (await client.get("/admin/v1/audit", headers=AUTH)).json()
    assert len(audit["items"]) == 5
    assert {item["actor"] for item in audit["items"]} == {"admin-api@127.0.0.1"}


async def test_apply_dry_run(client: httpx2.AsyncClient) -> None:
    response = await client.post("/admin/v1/apply?dry_run=true", json=sample(), headers=AUTH)
    assert response.status_code == 200
    assert response.json()["dry_run"] is True
    assert (await client.get("/admin/v1/services", headers=AUTH)).json()["items"] == []


async def test_invalid_document_is_a_problem_naming_entry_and_key(
    client: httpx2.AsyncClient,
) -> None:
    data = sample()
    data["services"][1]["limit_day"] = 0
    data["services"][0]["colour"] = "red"
    response = await client.post("/admin/v1/apply", json=data, headers=AUTH)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["title"] == "Invalid provisioning document"
    assert problem["errors"] == [
        {
            "entry": "services[0] (id=102)",
            "key": "colour",
            "message": "unknown key for a service of type access_code",
        },
        {
            "entry": "services[1] (id=201)",
            "key": "limit_day",
            "message": "Input should be greater than or equal to 1",
        },
    ]
    assert problem["detail"].startswith("request: services[0] (id=102): colour: ")

    data = sample()
    data["services"][0]["merchant"] = 9
    response = await client.post("/admin/v1/apply", json=data, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"entry": "services[0] (id=102)", "key": "merchant", "message": "no merchant with id 9"}
    ]


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff", b"[1]", b"null", b"42"])
async def test_malformed_bodies(client: httpx2.AsyncClient, body: bytes) -> None:
    response = await client.post(
        "/admin/v1/apply", content=body, headers={**AUTH, "content-type": "application/json"}
    )
    assert response.status_code in (400, 422)
    assert response.headers["content-type"] == "application/problem+json"


async def test_listings_carry_no_secrets(client: httpx2.AsyncClient, runtime: Runtime) -> None:
    data = sample()
    data["operators"].append(
        {
            "id": "push",
            "country": "BG",
            "kind": "http",
            "intake_secret": "intake-secret-0123456789",
        }
    )
    await provision(client, data)
    operators = (await client.get("/admin/v1/operators", headers=AUTH)).json()["items"]
    assert [(o["id"], o["has_intake_secret"]) for o in operators] == [
        ("push", True),
        ("sim-bg", False),
    ]
    merchants = (await client.get("/admin/v1/merchants", headers=AUTH)).json()["items"]
    assert merchants[0]["credit"] == "50.00"
    assert merchants[0]["has_api_key"] is True
    services = (await client.get("/admin/v1/services", headers=AUTH)).json()["items"]
    assert [s["id"] for s in services] == [102, 201]
    assert services[0]["short_numbers"] == ["1851@sim-bg"]
    assert services[1]["settings"]["price_per_part_minor"] == 5
    only = (await client.get("/admin/v1/services?merchant=2", headers=AUTH)).json()["items"]
    assert only == []
    numbers = (await client.get("/admin/v1/short-numbers", headers=AUTH)).json()["items"]
    assert numbers[0]["price"] == "2.40"

    async with runtime.sessions() as session:
        merchant = await session.get(Merchant, 1)
        secrets = [s.signing_secret for s in await session.scalars(select(Service))]
    assert merchant is not None
    forbidden = [
        "change-me",
        "k-123",
        merchant.password_hash,
        security.hash_api_key("k-123"),
        "intake-secret-0123456789",
        security.hash_token("intake-secret-0123456789"),
        *secrets,
    ]
    text = json.dumps([operators, merchants, services, numbers])
    for secret in forbidden:
        assert secret not in text
    assert '"password"' not in text
    assert '"secret"' not in text


async def test_signing_secret_endpoint_is_audited(
    client: httpx2.AsyncClient, runtime: Runtime
) -> None:
    await provision(client)
    response = await client.get("/admin/v1/services/102/signing-secret", headers=AUTH)
    assert response.status_code == 200
    async with runtime.sessions() as session:
        service = await session.get(Service, 102)
    assert service is not None
    assert response.json() == {"service_id": 102, "signing_secret": service.signing_secret}
    audit = (await client.get("/admin/v1/audit?entity=service&entity_id=102", headers=AUTH)).json()
    assert [i["action"] for i in audit["items"]] == ["reveal", "create"]
    assert service.signing_secret not in json.dumps(audit)
    missing = await client.get("/admin/v1/services/999/signing-secret", headers=AUTH)
    assert missing.status_code == 404


async def test_balance_and_payouts(client: httpx2.AsyncClient, runtime: Runtime) -> None:
    await provision(client)
    async with runtime.sessions() as session, session.begin():
        await ledger.book_mo_revenue(
            session,
            mo_id=1,
            merchant_id=1,
            gross_minor=2400,
            currency="BGN",
            operator_id="sim-bg",
            operator_share_bp=4000,
            merchant_share_bp=5000,
            now=NOW,
        )
    balance = (await client.get("/admin/v1/merchants/1/balance", headers=AUTH)).json()
    assert balance == {
        "merchant_id": 1,
        "currency": "BGN",
        "balance": "12.00",
        "balance_minor": 1200,
        "credit": "50.00",
        "credit_minor": 5000,
        "available": "62.00",
        "available_minor": 6200,
        "ledger_balance_minor": 1200,
        "consistent": True,
    }

    payout = {"amount": "10.00", "reference": "bank-2026-001", "memo": "January"}
    first = await client.post("/admin/v1/merchants/1/payouts", json=payout, headers=AUTH)
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["created"] is True
    assert body["balance"] == "2.00"
    assert body["entry"]["amount"] == "-10.00"
    assert body["entry"]["ref"] == "payout:bank-2026-001"
    repeat = await client.post("/admin/v1/merchants/1/payouts", json=payout, headers=AUTH)
    assert repeat.status_code == 200
    assert repeat.json()["entry"]["id"] == body["entry"]["id"]
    assert repeat.json()["created"] is False

    too_much = {"amount": "2.01", "reference": "bank-2026-002"}
    refused = await client.post("/admin/v1/merchants/1/payouts", json=too_much, headers=AUTH)
    assert refused.status_code == 409
    assert refused.json()["title"] == "Insufficient funds"  # the credit is not paid out
    reused = await client.post(
        "/admin/v1/merchants/1/payouts",
        json={"amount": "1.00", "reference": "bank-2026-001"},
        headers=AUTH,
    )
    assert reused.status_code == 409

    for bad, status in [
        ({"amount": "1.001", "reference": "r1"}, 422),
        ({"amount": "0", "reference": "r1"}, 422),
        ({"amount": 1.5, "reference": "r1"}, 422),
        ({"amount": "1.00", "reference": "r1", "currency": "EUR"}, 422),
        ({"amount": "1.00", "reference": "has space"}, 422),
        ({"amount": "1.00"}, 422),
    ]:
        response = await client.post("/admin/v1/merchants/1/payouts", json=bad, headers=AUTH)
        assert response.status_code == status, bad
        assert response.headers["content-type"] == "application/problem+json"
    unknown = await client.post(
        "/admin/v1/merchants/7/payouts", json={"amount": "1.00", "reference": "x"}, headers=AUTH
    )
    assert unknown.status_code == 404
    huge = await client.get(f"/admin/v1/merchants/{2**64}/balance", headers=AUTH)
    assert huge.status_code == 422

    entries = (await client.get("/admin/v1/merchants/1/ledger?limit=1", headers=AUTH)).json()
    assert [e["kind"] for e in entries["items"]] == ["payout"]
    assert entries["next_before"] == entries["items"][0]["id"]
    older = await client.get(
        f"/admin/v1/merchants/1/ledger?before={entries['next_before']}", headers=AUTH
    )
    assert [e["kind"] for e in older.json()["items"]] == ["mo_revenue"]
    after = (await client.get("/admin/v1/merchants/1/balance", headers=AUTH)).json()
    assert (after["balance_minor"], after["consistent"]) == (200, True)
    audit = (await client.get("/admin/v1/audit?entity=merchant", headers=AUTH)).json()
    assert [i["action"] for i in audit["items"]] == ["payout", "create"]


def test_openapi_describes_the_admin_api() -> None:
    # The admin routes alone: the whole application's document is other routers' business.
    document = get_openapi(title="smsgate", version="0", routes=admin.router.routes)
    paths = document["paths"]
    for path in (
        "/admin/v1/apply",
        "/admin/v1/operators",
        "/admin/v1/merchants",
        "/admin/v1/services",
        "/admin/v1/merchants/{merchant_id}/balance",
        "/admin/v1/merchants/{merchant_id}/payouts",
        "/admin/v1/audit",
    ):
        assert path in paths
    body = paths["/admin/v1/apply"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"operators", "short_numbers", "merchants", "services"} <= set(body["properties"])
    services = body["properties"]["services"]["items"]
    assert services["discriminator"] == {"propertyName": "type"}
    assert "$ref" not in json.dumps(body)
    access = next(
        s for s in services["oneOf"] if s["properties"]["type"].get("const") == "access_code"
    )
    assert {"code_kind", "reply_template", "keyword", "short_numbers"} <= set(access["properties"])
    payout = paths["/admin/v1/merchants/{merchant_id}/payouts"]["post"]["requestBody"]
    assert payout["content"]["application/json"]["schema"]["$ref"].endswith("/PayoutIn")
    assert "AdminToken" in document["components"]["securitySchemes"]
