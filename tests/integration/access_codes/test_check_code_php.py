"""check_code.php through the real application, on both databases: every status word, the
order of checks, the kinds, the trace."""

from __future__ import annotations

import httpx2
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from tests.integration.access_codes.conftest import client_from, code_of, send_mo

from smsgate.domain.clock import FakeClock
from smsgate.runtime import Runtime
from smsgate.store.models import AccessCode, CodeCheck


async def check(client: httpx2.AsyncClient, **params: str) -> str:
    response = await client.get("/users/check_code.php", params=params)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    return response.text


async def issue(runtime: Runtime, keyword: str, message_id: str = "m-1") -> str:
    outcome = await send_mo(runtime, keyword, message_id=message_id)
    return await code_of(runtime, outcome.mo_id)


async def test_a_one_use_code_is_ok_once_then_expired(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    code = await issue(runtime, "KOD")
    assert await check(client, user_id="1", service_id="102", code=code, ip="1.2.3.4") == "CODE_OK"
    assert await check(client, user_id="1", service_id="102", code=code) == "CODE_EXPIRED"


async def test_the_body_is_the_word_and_nothing_else(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    code = await issue(runtime, "KOD")
    response = await client.get(
        "/users/check_code.php", params={"user_id": 1, "service_id": 102, "code": code}
    )
    assert response.content == b"CODE_OK"
    assert response.headers["content-length"] == "7"


async def test_post_with_form_fields(runtime: Runtime, client: httpx2.AsyncClient) -> None:
    code = await issue(runtime, "KOD")
    response = await client.post(
        "/users/check_code.php", data={"user_id": "1", "service_id": "102", "code": code}
    )
    assert response.status_code == 200 and response.text == "CODE_OK"


async def test_post_multipart_as_php_curl_sends_an_array(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    code = await issue(runtime, "KOD")
    response = await client.post(
        "/users/check_code.php",
        files={"user_id": (None, "1"), "service_id": (None, "102"), "code": (None, code)},
    )
    assert response.status_code == 200 and response.text == "CODE_OK"


async def test_case_and_surrounding_spaces_are_ignored(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    code = await issue(runtime, "DAY")
    typed = f"  {code.lower()} "
    assert await check(client, user_id="1", service_id="103", code=typed) == "CODE_OK"


async def test_period_from_issue_expires_by_time(
    runtime: Runtime, client: httpx2.AsyncClient, clock: FakeClock
) -> None:
    code = await issue(runtime, "DAY")
    for _ in range(3):
        assert await check(client, user_id="1", service_id="103", code=code) == "CODE_OK"
    clock.advance(3599)
    assert await check(client, user_id="1", service_id="103", code=code) == "CODE_OK"
    clock.advance(1)
    assert await check(client, user_id="1", service_id="103", code=code) == "CODE_EXPIRED"


async def test_period_from_first_use_starts_on_the_first_ok(
    runtime: Runtime, client: httpx2.AsyncClient, clock: FakeClock
) -> None:
    code = await issue(runtime, "FIRST")
    clock.advance(7200)  # unused for two hours: the period has not started
    assert await check(client, user_id="1", service_id="104", code=code) == "CODE_OK"
    clock.advance(599)
    assert await check(client, user_id="1", service_id="104", code=code) == "CODE_OK"
    clock.advance(1)
    assert await check(client, user_id="1", service_id="104", code=code) == "CODE_EXPIRED"
    async with runtime.sessions() as session:
        row = await session.scalar(select(AccessCode).where(AccessCode.code == code))
    assert row is not None and row.uses_count == 2


async def test_an_unused_first_use_code_ends_with_its_lifetime(
    runtime: Runtime, client: httpx2.AsyncClient, clock: FakeClock
) -> None:
    code = await issue(runtime, "FIRST")
    clock.advance(86400)
    assert await check(client, user_id="1", service_id="104", code=code) == "CODE_EXPIRED"


async def test_a_uses_code_ends_after_validity_seconds_too(
    runtime: Runtime, client: httpx2.AsyncClient, clock: FakeClock
) -> None:
    code = await issue(runtime, "KOD")
    clock.advance(3600)
    assert await check(client, user_id="1", service_id="102", code=code) == "CODE_EXPIRED"


@pytest.mark.parametrize(
    "params",
    [
        {"user_id": "2", "service_id": "102", "code": "X"},  # another merchant's service
        {"user_id": "1", "service_id": "202", "code": "X"},  # ditto, the other way round
        {"user_id": "1", "service_id": "201", "code": "X"},  # a bulk service
        {"user_id": "1", "service_id": "999", "code": "X"},  # no such service
        {"user_id": "1", "service_id": "102"},  # no code
        {"user_id": "1", "service_id": "102", "code": "   "},  # an empty code
        {"user_id": "x", "service_id": "102", "code": "X"},
        {"service_id": "102", "code": "X"},
        {"user_id": "1", "service_id": "-102", "code": "X"},
        {"user_id": "1", "service_id": "0", "code": "X"},
        {"user_id": "1", "service_id": "9" * 40, "code": "X"},
        {"user_id": "1", "service_id": "102", "code": "X" * 65},
    ],
)
async def test_invalid_input(client: httpx2.AsyncClient, params: dict[str, str]) -> None:
    assert await check(client, **params) == "INVALID_INPUT"


async def test_a_repeated_parameter_is_invalid_input(client: httpx2.AsyncClient) -> None:
    response = await client.get(
        "/users/check_code.php?user_id=1&service_id=102&service_id=103&code=ABC"
    )
    assert response.text == "INVALID_INPUT"


async def test_unknown_code(client: httpx2.AsyncClient) -> None:
    assert await check(client, user_id="1", service_id="102", code="ZZZZZZZZ") == "CODE_NOT_FOUND"


async def test_a_code_of_another_service_is_not_found(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    code = await issue(runtime, "DAY")
    assert await check(client, user_id="1", service_id="102", code=code) == "CODE_NOT_FOUND"


async def test_service_disabled(client: httpx2.AsyncClient) -> None:
    assert await check(client, user_id="1", service_id="105", code="ABC") == "SERVICE_DISABLED"


async def test_invalid_ip_then_allowed_ip(runtime: Runtime, api: FastAPI) -> None:
    await send_mo(runtime, "LOCK", message_id="m-1")
    async with runtime.sessions() as session:
        code = await session.scalar(select(AccessCode.code).where(AccessCode.service_id == 106))
    assert code is not None
    async with client_from(api, "192.0.2.7") as stranger:
        assert await check(stranger, user_id="1", service_id="106", code=code) == "INVALID_IP"
    async with client_from(api, "10.9.4.4") as merchant_server:
        assert await check(merchant_server, user_id="1", service_id="106", code=code) == "CODE_OK"


async def test_repeated_failures_ban_the_address_on_that_service(
    runtime: Runtime, api: FastAPI, clock: FakeClock
) -> None:
    code = await issue(runtime, "DAY")
    async with client_from(api, "198.51.100.9") as guesser:
        for attempt in range(5):  # ban_after_failures = 5
            guess = f"GUESS{attempt:03d}"
            assert await check(guesser, user_id="1", service_id="102", code=guess) == (
                "CODE_NOT_FOUND"
            )
        # Even a right code is refused while banned, and the ban is per service.
        real = await issue(runtime, "KOD", "m-2")
        assert await check(guesser, user_id="1", service_id="102", code=real) == "BAN_IP_TEMP"
        assert await check(guesser, user_id="1", service_id="103", code=code) == "CODE_OK"
        async with client_from(api, "198.51.100.10") as neighbour:
            assert await check(neighbour, user_id="1", service_id="102", code=real) == "CODE_OK"
        clock.advance(3600 + 360)
        fresh = await issue(runtime, "KOD", "m-3")
        assert await check(guesser, user_id="1", service_id="102", code=fresh) == "CODE_OK"


async def test_every_check_is_stored(runtime: Runtime, client: httpx2.AsyncClient) -> None:
    code = await issue(runtime, "KOD")
    await check(client, user_id="1", service_id="102", code=code.lower(), ip="203.0.113.5")
    await check(client, user_id="1", service_id="102", code="nope\x00", ip="x" * 100)
    await check(client, user_id="1", service_id="999", code="whatever")
    async with runtime.sessions() as session:
        rows = await _checks(session)
    assert [(r.service_id, r.answer) for r in rows] == [
        (102, "CODE_OK"),
        (102, "CODE_NOT_FOUND"),
        (None, "INVALID_INPUT"),
    ]
    ok, missing, invalid = rows
    assert ok.code_id is not None and ok.user_ip == "203.0.113.5"
    assert ok.requester_ip == "127.0.0.1" and ok.code_given == code.lower() and ok.via == "legacy"
    assert missing.code_id is None and missing.code_given == "nope" and len(missing.user_ip) == 64
    assert invalid.code_given == "whatever"


async def _checks(session: AsyncSession) -> list[CodeCheck]:
    return list((await session.scalars(select(CodeCheck).order_by(CodeCheck.id))).all())
