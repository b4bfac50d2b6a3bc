"""An MO routed to an access-code service: a code, its reply and the revenue, committed with
the MO, once (both databases)."""

from __future__ import annotations

import random

from sqlalchemy import func, select
from tests.integration.access_codes.conftest import code_of, send_mo

from smsgate.domain.access_codes import ALNUM, LOOK_ALIKES
from smsgate.runtime import Runtime
from smsgate.services.access_codes import make_mo_handler
from smsgate.store.ledger import balance
from smsgate.store.models import AccessCode, MoMessage, MtMessage


async def _count(runtime: Runtime, model: type) -> int:
    async with runtime.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_an_mo_yields_a_code_a_reply_and_revenue(runtime: Runtime) -> None:
    outcome = await send_mo(runtime, "kod", message_id="m-1")
    assert outcome.status == "processed"
    code = await code_of(runtime, outcome.mo_id)
    assert len(code) == 8
    assert set(code) <= set(ALNUM)
    assert not set(code) & LOOK_ALIKES
    async with runtime.sessions() as session:
        row = await session.scalar(select(AccessCode).where(AccessCode.code == code))
        reply = await session.scalar(select(MtMessage).where(MtMessage.mo_id == outcome.mo_id))
        mo = await session.get_one(MoMessage, outcome.mo_id)
        merchant_balance = await balance(session, 1)
    assert row is not None and reply is not None
    assert row.service_id == 102 and row.msisdn == "359888123456" and row.uses_left == 1
    assert reply.text == f"Your code: {code}, valid until 2026-01-01 01:00"
    assert (reply.msisdn, reply.sender, reply.status) == ("359888123456", "1851", "queued")
    assert reply.service_id == 102 and reply.merchant_id == 1
    assert mo.details["code_id"] == row.id and mo.details["reply_mt_id"] == reply.id
    assert merchant_balance == 120  # 50% of 2.40 BGN


async def test_a_redelivered_mo_yields_no_second_code_or_reply(runtime: Runtime) -> None:
    first = await send_mo(runtime, "KOD", message_id="m-1")
    again = await send_mo(runtime, "KOD", message_id="m-1")
    assert again.duplicate and again.mo_id == first.mo_id
    assert await _count(runtime, AccessCode) == 1
    assert await _count(runtime, MtMessage) == 1
    async with runtime.sessions() as session:
        assert await balance(session, 1) == 120


async def test_codes_are_unique_in_a_service_even_when_the_draw_clashes(runtime: Runtime) -> None:
    # Two handlers with the same seed draw the same first code: the second must draw again.
    runtime.mo_handlers["access_code"] = make_mo_handler(random.Random(7))
    first = await send_mo(runtime, "KOD", message_id="m-1")
    runtime.mo_handlers["access_code"] = make_mo_handler(random.Random(7))
    second = await send_mo(runtime, "KOD", message_id="m-2")
    assert await code_of(runtime, first.mo_id) != await code_of(runtime, second.mo_id)
    assert second.status == "processed"


async def test_a_disabled_service_issues_no_code(runtime: Runtime) -> None:
    outcome = await send_mo(runtime, "OFF", message_id="m-1")
    assert outcome.status == "rejected"
    assert await _count(runtime, AccessCode) == 0
    async with runtime.sessions() as session:
        reply = await session.scalar(select(MtMessage).where(MtMessage.mo_id == outcome.mo_id))
    assert reply is not None and reply.text == "Unknown keyword."


async def test_a_first_use_code_reply_shows_its_lifetime(runtime: Runtime) -> None:
    outcome = await send_mo(runtime, "first", message_id="m-1")
    async with runtime.sessions() as session:
        reply = await session.scalar(select(MtMessage).where(MtMessage.mo_id == outcome.mo_id))
        row = await session.scalar(select(AccessCode).where(AccessCode.mo_id == outcome.mo_id))
    assert reply is not None and row is not None
    assert reply.text.endswith("valid until 2026-01-02 00:00")
    assert row.valid_until is None and row.period_seconds == 600
