"""Ban storages for the access-code tests: process memory and the real Redis."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from limits.aio.storage import RedisStorage
from sqlalchemy import select
from tests.factories import T0, add_merchant, add_operator, add_service, add_short_number

from smsgate.api.app import create_api
from smsgate.app import build_runtime
from smsgate.config import Settings
from smsgate.domain.clock import FakeClock
from smsgate.runtime import Runtime
from smsgate.security import hash_api_key
from smsgate.services.bans import BanList, make_storage
from smsgate.services.mo import IncomingMo, MoOutcome, receive_mo
from smsgate.store.models import AccessCode

REDIS_URL = os.environ.get("SMSGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(params=["memory", "redis"])
async def ban_list(request: pytest.FixtureRequest) -> AsyncIterator[BanList]:
    """A ban list on each storage; the Redis one under a prefix of its own, removed after."""
    if request.param == "memory":
        yield BanList(make_storage(None))
        return
    prefix = f"smsgate-test-{uuid.uuid4().hex[:12]}"
    storage = make_storage(REDIS_URL, key_prefix=prefix)
    assert isinstance(storage, RedisStorage)
    bans = BanList(storage)
    try:
        yield bans
    finally:
        await storage.reset()
        await bans.aclose()


# -- a gateway with access-code services -------------------------------------------------------

API_KEY = "k-shop-1"
OTHER_API_KEY = "k-shop-2"
HOSTED_SECRET = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"


def code_settings(**overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "code_kind": "uses",
        "validity_seconds": 3600,
        "uses": 1,
        "code_length": 8,
        "alphabet": "alnum",
        "reply_template": "Your code: {code}, valid until {valid_until}",
        "max_replies_per_mo": 1,
        "ban_after_failures": 5,
        "ban_window_seconds": 600,
        "ban_seconds": 3600,
    }
    settings.update(overrides)
    return settings


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
async def runtime(database_url: str, clock: FakeClock) -> AsyncIterator[Runtime]:
    """Merchant 1 with access-code services 102 (one use), 103 (period from issue), 104
    (period from first use), 105 (disabled), 106 (allowlist 10.9.0.0/16), 107 (hosted page,
    allowlist 10.9.0.0/16) and bulk service 201;
    merchant 2 with access-code service 202."""
    runtime = build_runtime(Settings(database_url=database_url), clock=clock)
    async with runtime.sessions() as session, session.begin():
        await add_operator(session)
        number = await add_short_number(session, default_reply="Unknown keyword.")
        await add_merchant(session, 1, api_key_hash=hash_api_key(API_KEY))
        await add_merchant(session, 2, api_key_hash=hash_api_key(OTHER_API_KEY))
        await add_service(
            session, 102, keyword="KOD", short_numbers=[number], settings=code_settings()
        )
        await add_service(
            session,
            103,
            keyword="DAY",
            short_numbers=[number],
            settings=code_settings(code_kind="period_from_issue"),
        )
        await add_service(
            session,
            104,
            keyword="FIRST",
            short_numbers=[number],
            settings=code_settings(
                code_kind="period_from_first_use", validity_seconds=600, lifetime_seconds=86400
            ),
        )
        await add_service(
            session,
            105,
            keyword="OFF",
            short_numbers=[number],
            status="disabled",
            settings=code_settings(),
        )
        await add_service(
            session,
            106,
            keyword="LOCK",
            short_numbers=[number],
            ip_allowlist=["10.9.0.0/16"],
            settings=code_settings(),
        )
        await add_service(
            session,
            107,
            keyword="WEB",
            short_numbers=[number],
            ip_allowlist=["10.9.0.0/16"],
            signing_secret=HOSTED_SECRET,
            settings=code_settings(return_url="https://shop.example/paid?lang=bg"),
        )
        await add_service(session, 201, type="bulk", keyword="", settings={"sender": "SHOP"})
        await add_service(
            session,
            202,
            merchant_id=2,
            keyword="OTHER",
            short_numbers=[number],
            settings=code_settings(),
        )
    yield runtime
    await runtime.engine.dispose()


@pytest.fixture
async def api(runtime: Runtime) -> AsyncIterator[FastAPI]:
    app = create_api(runtime)
    yield app
    checker = getattr(app.state, "code_checker", None)
    if checker is not None:
        await checker.aclose()


def client_from(app: FastAPI, address: str = "127.0.0.1") -> httpx2.AsyncClient:
    transport = httpx2.ASGITransport(app=app, client=(address, 40000))
    return httpx2.AsyncClient(transport=transport, base_url="http://gw")


@pytest.fixture
async def client(api: FastAPI) -> AsyncIterator[httpx2.AsyncClient]:
    async with client_from(api) as client:
        yield client


async def send_mo(
    runtime: Runtime, text: str, *, message_id: str, msisdn: str = "359888123456"
) -> MoOutcome:
    async with runtime.sessions() as session, session.begin():
        return await receive_mo(
            session,
            IncomingMo("op-bg", message_id, "1851", msisdn, text),
            now=runtime.clock.now(),
            handlers=runtime.mo_handlers,
        )


async def code_of(runtime: Runtime, mo_id: int) -> str:
    async with runtime.sessions() as session:
        code = await session.scalar(select(AccessCode.code).where(AccessCode.mo_id == mo_id))
    assert code is not None
    return code
