"""Seed 000 end to end: a subscriber's MO goes in at the built-in operator, travels over SMPP
to the gateway, the reply with the code travels back to the handset's inbox, and the
merchant's site checks the code with check_code.php; each kind expires as it says."""

from __future__ import annotations

import asyncio
import re

from tests.acceptance.access_codes.conftest import OPERATOR, World

from smsgate.domain.access_codes import ALNUM, DIGITS, LETTERS


async def send_and_receive(world: World, msisdn: str, text: str) -> str:
    """Send an MO from ``msisdn``; return the text of the reply its handset receives."""
    before = len((await world.gateway.get(f"/sim/inbox/{msisdn}")).json())
    response = await world.gateway.post(
        "/sim/mo",
        json={"msisdn": msisdn, "short_number": "1851", "text": text, "operator": OPERATOR},
    )
    assert response.status_code == 200, response.text
    async with asyncio.timeout(10):
        while True:
            inbox = (await world.gateway.get(f"/sim/inbox/{msisdn}")).json()
            if len(inbox) > before:
                message = inbox[-1]
                assert message["from"] == "1851"
                return str(message["text"])
            await asyncio.sleep(0.02)


async def check(world: World, service_id: int, code: str) -> str:
    response = await world.gateway.get(
        "/users/check_code.php",
        params={"user_id": 1, "service_id": service_id, "code": code, "ip": "203.0.113.7"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    return response.text


async def test_uses_code(world: World) -> None:
    reply = await send_and_receive(world, "359888000001", "KOD")
    match = re.fullmatch(r"Your code: ([A-Z0-9]{8})", reply)
    assert match, reply
    code = match.group(1)
    assert set(code) <= set(ALNUM)
    assert await check(world, 102, code) == "CODE_OK"
    assert await check(world, 102, code.lower()) == "CODE_OK"
    assert await check(world, 102, code) == "CODE_EXPIRED"


async def test_period_from_issue_code(world: World) -> None:
    reply = await send_and_receive(world, "359888000002", "day")
    match = re.fullmatch(r"Code ([0-9]{6}) valid until \d{4}-\d\d-\d\d \d\d:\d\d", reply)
    assert match, reply
    code = match.group(1)
    assert set(code) <= set(DIGITS)
    assert await check(world, 103, code) == "CODE_OK"
    world.clock.advance(86400 - 1)
    assert await check(world, 103, code) == "CODE_OK"
    world.clock.advance(1)
    assert await check(world, 103, code) == "CODE_EXPIRED"


async def test_period_from_first_use_code(world: World) -> None:
    reply = await send_and_receive(world, "359888000003", "First")
    match = re.fullmatch(r"Code ([A-Z]{8}): one hour from its first use", reply)
    assert match, reply
    code = match.group(1)
    assert set(code) <= set(LETTERS)
    world.clock.advance(2 * 86400)  # unused for two days: its hour has not started
    assert await check(world, 104, code) == "CODE_OK"
    world.clock.advance(3599)
    assert await check(world, 104, code) == "CODE_OK"
    world.clock.advance(1)
    assert await check(world, 104, code) == "CODE_EXPIRED"


async def test_a_wrong_code_and_the_trace(world: World) -> None:
    assert await check(world, 102, "WRONG234") == "CODE_NOT_FOUND"
    checks = await world.gateway.get(
        "/api/v1/services/102/code-checks", headers={"X-API-Key": "k-123"}
    )
    assert checks.status_code == 200
    assert [c["answer"] for c in checks.json()["items"]] == ["CODE_NOT_FOUND"]
