"""Operator HTTP intake over the real application and database (both backends)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from tests.factories import (
    T0,
    add_merchant,
    add_operator,
    add_service,
    add_short_number,
)

from smsgate.api.app import create_api
from smsgate.app import build_runtime
from smsgate.config import Settings
from smsgate.domain.clock import FakeClock
from smsgate.runtime import Runtime
from smsgate.services.mo import MoContext
from smsgate.store.models import DeliveryReport, MoMessage, MtMessage, MtPart, Service

AUTH = {"Authorization": "Bearer intake-1"}


@pytest.fixture
async def runtime(database_url: str) -> AsyncIterator[Runtime]:
    runtime = build_runtime(Settings(database_url=database_url), clock=FakeClock(T0))
    async with runtime.sessions() as session, session.begin():
        await add_operator(session)
        await add_operator(session, "op-locked", ip_allowlist=["10.9.9.0/24"])
        number = await add_short_number(session, default_reply="Unknown keyword. Try KOD.")
        await add_merchant(session)
        await add_service(session, 102, keyword="KOD", short_numbers=[number])
    yield runtime
    await runtime.engine.dispose()


@pytest.fixture
def handled(runtime: Runtime) -> list[int]:
    seen: list[int] = []

    async def handler(
        _session: AsyncSession, mo: MoMessage, _service: Service, _ctx: MoContext
    ) -> None:
        seen.append(mo.id)

    runtime.mo_handlers["access_code"] = handler
    return seen


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=create_api(runtime))
    async with httpx2.AsyncClient(transport=transport, base_url="http://gw") as client:
        yield client


async def _count(runtime: Runtime, model: Any) -> int:
    async with runtime.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


MO = {"message_id": "m-1", "msisdn": "359888123456", "short_number": "1851", "text": "kod"}


async def test_mo_is_stored_once_and_routed_even_when_pushed_twice(
    runtime: Runtime, client: httpx2.AsyncClient, handled: list[int]
) -> None:
    first = await client.post("/operators/op-bg/mo", json=MO, headers=AUTH)
    second = await client.post("/operators/op-bg/mo", data=MO, headers=AUTH)
    assert first.status_code == 200, first.text
    assert first.json()["duplicate"] is False and first.json()["routed"] is True
    assert second.status_code == 200
    assert second.json() == dict(first.json(), duplicate=True)
    assert await _count(runtime, MoMessage) == 1
    assert handled == [first.json()["id"]]
    async with runtime.sessions() as session:
        mo = await session.get_one(MoMessage, first.json()["id"])
    assert (mo.service_id, mo.status, mo.keyword, mo.price_minor) == (102, "routed", "kod", 240)


async def test_unrouted_mo_is_kept_and_gets_the_default_reply(
    runtime: Runtime, client: httpx2.AsyncClient, handled: list[int]
) -> None:
    response = await client.post(
        "/operators/op-bg/mo", json=dict(MO, text="hello there"), headers=AUTH
    )
    assert response.status_code == 200 and response.json()["routed"] is False
    assert handled == []
    async with runtime.sessions() as session:
        mo = await session.get_one(MoMessage, response.json()["id"])
        replies = (await session.execute(select(MtMessage))).scalars().all()
    assert mo.status == "unrouted"
    assert [(r.msisdn, r.sender, r.text, r.mo_id, r.status) for r in replies] == [
        ("359888123456", "1851", "Unknown keyword. Try KOD.", mo.id, "queued")
    ]


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/operators/op-bg/mo", {}, 401),
        ("/operators/op-bg/mo", {"Authorization": "Bearer wrong"}, 401),
        ("/operators/nobody/mo", AUTH, 401),
        ("/operators/op-bg/mo", {"X-Operator-Secret": "intake-1"}, 200),
        ("/operators/op-locked/mo", AUTH, 403),
    ],
)
async def test_intake_authenticates_each_operator(
    client: httpx2.AsyncClient, path: str, headers: dict[str, str], status: int
) -> None:
    response = await client.post(path, json=MO, headers=headers)
    assert response.status_code == status, response.text
    if status != 200:
        assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"[1, 2]", "application/json", 422),
        (b'{"message_id": "x"}', "application/json", 422),
        (b"message_id=&msisdn=1&short_number=1851", "application/x-www-form-urlencoded", 422),
        (b"\xff\xfe\x00", "application/json", 400),
        (b"x" * 20000, "application/json", 413),
    ],
)
async def test_bad_bodies_get_clear_problems(
    client: httpx2.AsyncClient, body: bytes, content_type: str, status: int
) -> None:
    response = await client.post(
        "/operators/op-bg/mo", content=body, headers=dict(AUTH, **{"content-type": content_type})
    )
    assert response.status_code == status, response.text
    assert response.json()["status"] == status


async def test_a_receipt_before_its_submit_response_is_kept_and_applied_later(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    from smsgate.services.dlr import attach_operator_message_id
    from smsgate.services.mt import queue_mt

    async with runtime.sessions() as session, session.begin():
        mt = await queue_mt(
            session,
            operator_id="op-bg",
            msisdn="359888123456",
            sender="1851",
            text="hi",
            now=T0,
        )
        part = MtPart(mt_id=mt.id, part_no=1, operator_id="op-bg", status="submitted")
        session.add(part)
    early = await client.post(
        "/operators/op-bg/dlr", json={"message_id": "abc", "status": "DELIVRD"}, headers=AUTH
    )
    assert early.status_code == 200 and early.json()["matched"] is False
    async with runtime.sessions() as session, session.begin():
        part = await session.get_one(MtPart, part.id)
        await attach_operator_message_id(session, part, "abc", now=T0)
    async with runtime.sessions() as session:
        stored_mt = await session.get_one(MtMessage, mt.id)
        report = (await session.execute(select(DeliveryReport))).scalar_one()
    assert stored_mt.status == "delivered"
    assert report.mt_part_id == part.id
    late = await client.post(
        "/operators/op-bg/dlr", json={"message_id": "abc", "status": "UNDELIV"}, headers=AUTH
    )
    assert late.json()["matched"] is True
    async with runtime.sessions() as session:
        assert (await session.get_one(MtMessage, mt.id)).status == "delivered"


async def test_call_event_becomes_a_waitcall_message(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    response = await client.post(
        "/operators/op-bg/calls",
        json={"call_id": "c-1", "from": "359888123456", "to": "1851"},
        headers=AUTH,
    )
    assert response.status_code == 200, response.text
    async with runtime.sessions() as session:
        mo = await session.get_one(MoMessage, response.json()["id"])
    assert (mo.kind, mo.text, mo.operator_message_id) == ("call", "[waitcall]", "call:c-1")


@pytest.mark.postgres
async def test_concurrent_redeliveries_store_one_mo(pg_database_url: str) -> None:
    pg_runtime = build_runtime(Settings(database_url=pg_database_url), clock=FakeClock(T0))
    seen: list[int] = []

    async def handler(_s: AsyncSession, mo: MoMessage, _sv: Service, _c: MoContext) -> None:
        seen.append(mo.id)

    pg_runtime.mo_handlers["access_code"] = handler
    async with pg_runtime.sessions() as session, session.begin():
        await add_operator(session)
        number = await add_short_number(session)
        await add_merchant(session)
        await add_service(session, 102, short_numbers=[number])
    transport = httpx2.ASGITransport(app=create_api(pg_runtime))
    async with httpx2.AsyncClient(transport=transport, base_url="http://gw") as client:
        responses = await asyncio.gather(
            *[client.post("/operators/op-bg/mo", json=MO, headers=AUTH) for _ in range(12)]
        )
    assert all(r.status_code == 200 for r in responses)
    assert sorted(r.json()["duplicate"] for r in responses) == [False] + [True] * 11
    assert len(seen) == 1
    assert await _count(pg_runtime, MoMessage) == 1
    await pg_runtime.engine.dispose()
