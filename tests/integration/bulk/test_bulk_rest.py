"""The JSON REST twin of send_bulk.php: /api/v1/messages and the opt-out list, with problem
details, idempotency keys and the OpenAPI document."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx2
import pytest
from sqlalchemy import func, select, update
from tests.factories import add_merchant, add_short_number
from tests.integration.bulk.bulk_env import (
    API_KEY,
    BG_NUMBER,
    SERVICE_ID,
    T_START,
    add_bulk_service,
    provision,
)

from smsgate.api import bulk_rest
from smsgate.domain.clock import FakeClock
from smsgate.runtime import Runtime
from smsgate.security import hash_api_key
from smsgate.store.models import LedgerEntry, Merchant, MtMessage, OptOut

KEY = {"X-API-Key": API_KEY}
OTHER = "359887654321"


async def setup(runtime: Runtime, **settings: Any) -> None:
    async with runtime.sessions() as session, session.begin():
        await provision(session, **settings)


async def post(client: httpx2.AsyncClient, body: dict[str, Any], **headers: str) -> httpx2.Response:
    return await client.post("/api/v1/messages", json=body, headers={**KEY, **headers})


async def counts(runtime: Runtime) -> tuple[int, int]:
    async with runtime.sessions() as session:
        mts = await session.scalar(select(func.count()).select_from(MtMessage))
        entries = await session.scalar(select(func.count()).select_from(LedgerEntry))
    return int(mts or 0), int(entries or 0)


async def test_send_to_one_recipient(runtime: Runtime, client: httpx2.AsyncClient) -> None:
    await setup(runtime, max_parts=2, price="0.05")
    response = await post(
        client, {"service_id": SERVICE_ID, "to": "+359 88 123 4567", "text": "Ж" * 100}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["msisdn"] == BG_NUMBER
    assert (body["status"], body["parts"], body["encoding"]) == ("queued", 2, "ucs2")
    assert (body["cost"], body["currency"], body["duplicate"]) == ("0.10", "BGN", False)
    async with runtime.sessions() as session:
        mt = await session.get_one(MtMessage, body["id"])
    assert (mt.status, mt.details["via"]) == ("queued", "rest")


async def test_idempotency_key_sends_once(runtime: Runtime, client: httpx2.AsyncClient) -> None:
    await setup(runtime)
    body = {"service_id": SERVICE_ID, "to": BG_NUMBER, "text": "Once"}
    first = await post(client, body, **{"Idempotency-Key": "order-77"})
    again = await post(client, body, **{"Idempotency-Key": "order-77"})
    other = await post(client, body, **{"Idempotency-Key": "order-78"})
    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 201)
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["duplicate"] is True
    assert other.json()["id"] != first.json()["id"]
    assert await counts(runtime) == (2, 2)


async def test_many_recipients_each_with_its_result(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    await setup(runtime, limit_day=2)
    to = [BG_NUMBER, "0881234567", OTHER, "359881111111"]
    response = await post(client, {"service_id": SERVICE_ID, "to": to, "text": "Hi"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["refused"]) == (2, 2)
    results = body["results"]
    assert [r["msisdn"] for r in results] == to
    assert [r["accepted"] for r in results] == [True, False, True, False]
    assert results[1]["error"]["type"] == "urn:smsgate:problem:invalid-msisdn"
    assert results[1]["error"]["code"] == "INVALID_MSISDN"
    assert results[3]["error"]["type"] == "urn:smsgate:problem:limit-day"
    assert results[3]["error"]["status"] == 429
    assert await counts(runtime) == (2, 2)


async def test_many_recipients_with_an_idempotency_key(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    await setup(runtime)
    body = {"service_id": SERVICE_ID, "to": [BG_NUMBER, OTHER], "text": "Batch"}
    first = await post(client, body, **{"Idempotency-Key": "batch-1"})
    again = await post(client, body, **{"Idempotency-Key": "batch-1"})
    ids = [r["message"]["id"] for r in first.json()["results"]]
    assert [r["message"]["id"] for r in again.json()["results"]] == ids
    assert all(r["message"]["duplicate"] for r in again.json()["results"])
    assert await counts(runtime) == (2, 2)


async def test_recipient_limit_is_1000(runtime: Runtime, client: httpx2.AsyncClient) -> None:
    await setup(runtime)
    response = await post(
        client, {"service_id": SERVICE_ID, "to": [BG_NUMBER] * 1001, "text": "Hi"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("settings", "body", "status", "kind", "word"),
    [
        ({}, {"service_id": 999}, 404, "unknown-service", "INVALID_INPUT"),
        ({"status": "disabled"}, {}, 403, "service-disabled", "SERVICE_DISABLED"),
        ({"ip_allowlist": ["10.0.0.0/8"]}, {}, 403, "ip-not-allowed", "INVALID_IP"),
        ({}, {"to": "0881234567"}, 422, "invalid-msisdn", "INVALID_MSISDN"),
        ({}, {"text": "x" * 161}, 422, "too-many-parts", "INVALID_INPUT"),
        ({"patterns": ["Code {*}"]}, {"text": "Hi"}, 422, "pattern-mismatch", "INVALID_PATTERN"),
        ({"limit_month": 1, "price": "0"}, {"text": "x" * 2}, 201, None, None),
        ({"credit_minor": 0}, {}, 402, "insufficient-funds", "SERVICE_DISABLED"),
    ],
)
async def test_refusals_are_problem_details(
    runtime: Runtime,
    client: httpx2.AsyncClient,
    settings: dict[str, Any],
    body: dict[str, Any],
    status: int,
    kind: str | None,
    word: str | None,
) -> None:
    await setup(runtime, **settings)
    response = await post(client, {"service_id": SERVICE_ID, "to": BG_NUMBER, "text": "Hi", **body})
    assert response.status_code == status, response.text
    if kind is None:
        return
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["type"], problem["status"], problem["code"]) == (
        f"urn:smsgate:problem:{kind}",
        status,
        word,
    )
    assert problem["title"]
    assert await counts(runtime) == (0, 0)


async def test_limits_answer_429(runtime: Runtime, client: httpx2.AsyncClient) -> None:
    await setup(runtime, limit_month=1)
    body = {"service_id": SERVICE_ID, "to": BG_NUMBER, "text": "Hi"}
    assert (await post(client, body)).status_code == 201
    refused = await post(client, body)
    assert refused.status_code == 429
    assert refused.json()["code"] == "LIMIT_MONTH"
    # April begins at 00:00 in Sofia (UTC+3 from 29 March): 2026-03-31T21:00Z.
    assert refused.json()["retry_at"] == "2026-03-31T21:00:00+00:00"
    expected = datetime(2026, 3, 31, 21, tzinfo=UTC) - T_START
    assert refused.headers["Retry-After"] == str(int(expected.total_seconds()))


async def test_delay_says_when_to_retry(
    runtime: Runtime, client: httpx2.AsyncClient, clock: FakeClock
) -> None:
    await setup(runtime, min_interval_seconds=90)
    body = {"service_id": SERVICE_ID, "to": BG_NUMBER, "text": "Hi"}
    assert (await post(client, body)).status_code == 201
    clock.advance(30)
    refused = await post(client, body)
    assert (refused.status_code, refused.json()["code"]) == (429, "LIMIT_DELAY")
    assert refused.headers["Retry-After"] == "60"


async def test_another_merchants_service_is_unknown(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    await setup(runtime)
    async with runtime.sessions() as session, session.begin():
        await add_merchant(session, 2)
        await add_bulk_service(session, 301, merchant_id=2)
    response = await post(client, {"service_id": 301, "to": BG_NUMBER, "text": "Hi"})
    assert response.status_code == 404
    opt_outs = await client.get("/api/v1/services/301/opt-outs", headers=KEY)
    assert opt_outs.status_code == 404


async def test_api_key_is_required(runtime: Runtime, client: httpx2.AsyncClient) -> None:
    await setup(runtime)
    body = {"service_id": SERVICE_ID, "to": BG_NUMBER, "text": "Hi"}
    assert (await client.post("/api/v1/messages", json=body)).status_code == 401
    wrong = await client.post("/api/v1/messages", json=body, headers={"X-API-Key": "nope"})
    assert wrong.status_code == 401
    bearer = await client.post(
        "/api/v1/messages", json=body, headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert bearer.status_code == 201


async def test_opt_out_list_refuses_with_a_distinct_problem(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    await setup(runtime)
    url = f"/api/v1/services/{SERVICE_ID}/opt-outs"
    added = await client.post(url, json={"msisdn": "+359881234567"}, headers=KEY)
    assert added.status_code == 201
    assert (added.json()["msisdn"], added.json()["reason"]) == (BG_NUMBER, "merchant")
    assert (await client.post(url, json={"msisdn": BG_NUMBER}, headers=KEY)).status_code == 200
    send = {"service_id": SERVICE_ID, "to": BG_NUMBER, "text": "Hi"}
    refused = await post(client, send)
    assert refused.status_code == 422
    assert refused.json()["type"] == "urn:smsgate:problem:opted-out"
    assert refused.json()["code"] == "INVALID_MSISDN"
    seed = await client.get(
        "/users/send_bulk.php",
        params={"user_id": 1, "service_id": SERVICE_ID, "msisdn": BG_NUMBER, "text": "Hi"},
    )
    assert seed.text == "INVALID_MSISDN"
    listed = await client.get(url, headers=KEY)
    assert [item["msisdn"] for item in listed.json()["items"]] == [BG_NUMBER]
    removed = await client.delete(f"{url}/{BG_NUMBER}", headers=KEY)
    assert removed.status_code == 204
    assert (await client.delete(f"{url}/{BG_NUMBER}", headers=KEY)).status_code == 404
    assert (await post(client, send)).status_code == 201


async def test_stop_mo_opts_out_and_start_opts_back_in(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    async with runtime.sessions() as session, session.begin():
        await provision(session, service_id=999)  # operator and merchant; 999 unused
        number = await add_short_number(session, "1851", "sim-bg")
        await add_bulk_service(session, SERVICE_ID, short_numbers=[number])
    intake = {"Authorization": "Bearer intake-1"}

    async def mo(message_id: str, text: str) -> None:
        response = await client.post(
            "/operators/sim-bg/mo",
            json={
                "message_id": message_id,
                "msisdn": "+" + BG_NUMBER,
                "short_number": "1851",
                "text": text,
            },
            headers=intake,
        )
        assert response.status_code == 200, response.text
        assert response.json()["routed"] is True

    await mo("mo-1", "stop")
    async with runtime.sessions() as session:
        entry = await session.get_one(OptOut, (SERVICE_ID, BG_NUMBER))
    assert entry.reason == "stop_mo"
    send = {"service_id": SERVICE_ID, "to": BG_NUMBER, "text": "Hi"}
    assert (await post(client, send)).json()["type"] == "urn:smsgate:problem:opted-out"
    await mo("mo-2", "Start")
    assert (await post(client, send)).status_code == 201


async def test_openapi_documents_the_bulk_endpoints(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    document = (await client.get("/openapi.json")).json()
    paths = document["paths"]
    assert {"get", "post"} <= set(paths["/users/send_bulk.php"])
    assert "post" in paths["/api/v1/messages"]
    assert "get" in paths["/api/v1/messages/{message_id}"]
    assert {"get", "post"} <= set(paths["/api/v1/services/{service_id}/opt-outs"])
    assert "delete" in paths["/api/v1/services/{service_id}/opt-outs/{msisdn}"]


async def test_a_revoked_api_key_stops_working_within_the_key_memory(
    runtime: Runtime, client: httpx2.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk_rest, "KEY_MEMORY_SECONDS", 0.2)
    await setup(runtime)
    body = {"service_id": SERVICE_ID, "to": BG_NUMBER, "text": "Hi"}
    fresh = {"X-API-Key": "k-new"}
    # An unknown key is not remembered: once set, it works at once.
    assert (await client.post("/api/v1/messages", json=body, headers=fresh)).status_code == 401
    async with runtime.sessions() as session, session.begin():
        await session.execute(update(Merchant).values(api_key_hash=hash_api_key("k-new")))
    assert (await client.post("/api/v1/messages", json=body, headers=fresh)).status_code == 201
    async with runtime.sessions() as session, session.begin():
        await session.execute(update(Merchant).values(api_key_hash=None))
    await asyncio.sleep(0.3)
    assert (await client.post("/api/v1/messages", json=body, headers=fresh)).status_code == 401
