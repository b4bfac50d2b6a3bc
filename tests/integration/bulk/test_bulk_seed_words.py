"""send_bulk.php through the real application on both databases: every status word of seed 001,
and what an accepted message leaves in the database."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from sqlalchemy import func, select
from tests.integration.bulk.bulk_env import (
    BG_NUMBER,
    MERCHANT_ID,
    SERVICE_ID,
    add_bulk_service,
    add_route,
    provision,
)

from smsgate.domain.clock import FakeClock
from smsgate.runtime import Runtime
from smsgate.services.optouts import BY_MERCHANT, add_opt_out
from smsgate.store.models import LedgerEntry, Merchant, MtMessage, QuotaCounter

URL = "/users/send_bulk.php"


async def send(client: httpx2.AsyncClient, method: str = "GET", **given: Any) -> str:
    params = {
        "user_id": str(MERCHANT_ID),
        "service_id": str(SERVICE_ID),
        "msisdn": BG_NUMBER,
        "text": "Your invoice is ready",
    }
    params.update({k: str(v) for k, v in given.items() if v is not None})
    for key in [k for k, v in given.items() if v is None]:
        params.pop(key)
    if method == "GET":
        response = await client.get(URL, params=params)
    else:
        response = await client.post(URL, data=params)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


async def setup(runtime: Runtime, **service: Any) -> None:
    async with runtime.sessions() as session, session.begin():
        await provision(session, **service)


async def count_mts(runtime: Runtime) -> int:
    async with runtime.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(MtMessage)) or 0)


async def test_msg_ok_queues_charges_and_counts(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    await setup(runtime, price="0.05", limit_day=100)
    assert await send(client) == "MSG_OK"
    async with runtime.sessions() as session:
        mt = (await session.execute(select(MtMessage))).scalar_one()
        assert (mt.status, mt.operator_id, mt.msisdn, mt.sender) == (
            "queued",
            "sim-bg",
            BG_NUMBER,
            "SHOP",
        )
        assert (mt.parts, mt.cost_minor, mt.currency, mt.encoding) == (1, 5, "BGN", "gsm7")
        entry = (await session.execute(select(LedgerEntry))).scalar_one()
        assert (entry.account, entry.kind, entry.amount_minor, entry.ref) == (
            f"merchant:{MERCHANT_ID}",
            "mt_cost",
            -5,
            f"mt:{mt.id}",
        )
        merchant = await session.get_one(Merchant, MERCHANT_ID)
        assert merchant.balance_minor == -5
        counter = (await session.execute(select(QuotaCounter))).scalar_one()
        assert (counter.window, counter.count) == ("d:2026-03-10", 1)


async def test_extended_answers_the_message_id(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    await setup(runtime)
    answer = await send(client, extended="yes")
    assert answer.startswith("MSG_OK:")
    async with runtime.sessions() as session:
        mt = (await session.execute(select(MtMessage))).scalar_one()
    assert answer == f"MSG_OK:{mt.id}"


async def test_post_form_body_is_accepted(runtime: Runtime, client: httpx2.AsyncClient) -> None:
    await setup(runtime)
    assert await send(client, "POST", extended="yes") == f"MSG_OK:{1}"


async def test_multipart_form_body_is_accepted(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    await setup(runtime)
    fields = {"user_id": "1", "service_id": str(SERVICE_ID), "msisdn": BG_NUMBER, "text": "Hi"}
    response = await client.post(URL, files={k: (None, v) for k, v in fields.items()})
    assert response.text == "MSG_OK"
    assert await count_mts(runtime) == 1


async def test_requests_are_measured_under_their_route(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    await setup(runtime)
    await send(client)
    metrics = (await client.get("/metrics")).text
    assert 'route="/users/send_bulk.php"' in metrics


@pytest.mark.parametrize(
    "given",
    [
        {"text": None},
        {"text": ""},
        {"msisdn": None},
        {"user_id": None},
        {"user_id": "abc"},
        {"service_id": "-3"},
        {"service_id": "999"},  # no such service
        {"user_id": "2"},  # another merchant's service
    ],
)
async def test_invalid_input(
    runtime: Runtime, client: httpx2.AsyncClient, given: dict[str, Any]
) -> None:
    await setup(runtime)
    assert await send(client, **given) == "INVALID_INPUT"
    assert await count_mts(runtime) == 0


async def test_invalid_input_for_a_service_of_another_type(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    await setup(runtime)
    async with runtime.sessions() as session, session.begin():
        from tests.factories import add_service

        await add_service(session, 102, keyword="KOD")
    assert await send(client, service_id=102) == "INVALID_INPUT"


async def test_invalid_input_beyond_max_parts(runtime: Runtime, client: httpx2.AsyncClient) -> None:
    await setup(runtime, max_parts=2)
    assert await send(client, text="a" * 306) == "MSG_OK"  # 2 parts of 153
    assert await send(client, text="a" * 307) == "INVALID_INPUT"  # 3 parts
    # Cyrillic goes out in UCS-2: 70 per single part, 67 per part of a long one.
    assert await send(client, text="Ж" * 134) == "MSG_OK"
    assert await send(client, text="Ж" * 135) == "INVALID_INPUT"
    async with runtime.sessions() as session:
        parts = (await session.execute(select(MtMessage.parts, MtMessage.encoding))).all()
    assert sorted(parts) == [(2, "gsm7"), (2, "ucs2")]


async def test_multipart_is_charged_and_counted_per_part(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    await setup(runtime, max_parts=5, price="0.05", limit_day=10)
    assert await send(client, text="Здравейте! " * 20) == "MSG_OK"  # 220 UCS-2 units: 4 parts
    async with runtime.sessions() as session:
        mt = (await session.execute(select(MtMessage))).scalar_one()
        counter = (await session.execute(select(QuotaCounter))).scalar_one()
    assert (mt.parts, mt.cost_minor, counter.count) == (4, 20, 4)


async def test_invalid_ip(runtime: Runtime, client: httpx2.AsyncClient) -> None:
    await setup(runtime, ip_allowlist=["10.0.0.0/8"])
    assert await send(client) == "INVALID_IP"
    async with runtime.sessions() as session, session.begin():
        from smsgate.store.models import Service

        service = await session.get_one(Service, SERVICE_ID)
        service.ip_allowlist = ["198.51.100.0/24"]
    assert await send(client) == "MSG_OK"


async def test_invalid_pattern(runtime: Runtime, client: httpx2.AsyncClient) -> None:
    await setup(runtime, patterns=["Invoice {*} is due on {*}.", "Hello"])
    assert await send(client, text="Invoice 42 is due on 1 May.") == "MSG_OK"
    assert await send(client, text="Hello") == "MSG_OK"
    assert await send(client, text="Hello there") == "INVALID_PATTERN"
    assert await send(client, text="Invoice 42 is due on 1 May") == "INVALID_PATTERN"


async def test_service_disabled(runtime: Runtime, client: httpx2.AsyncClient) -> None:
    await setup(runtime, status="disabled")
    assert await send(client) == "SERVICE_DISABLED"


async def test_merchant_disabled(runtime: Runtime, client: httpx2.AsyncClient) -> None:
    await setup(runtime, merchant_status="disabled")
    assert await send(client) == "SERVICE_DISABLED"


async def test_no_funds_answers_service_disabled(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    await setup(runtime, credit_minor=10, price="0.05")
    assert await send(client) == "MSG_OK"  # balance -5
    assert await send(client) == "MSG_OK"  # balance -10 == -credit
    assert await send(client) == "SERVICE_DISABLED"
    assert await count_mts(runtime) == 2
    async with runtime.sessions() as session:
        merchant = await session.get_one(Merchant, MERCHANT_ID)
        counters = (await session.execute(select(QuotaCounter))).scalars().all()
    assert merchant.balance_minor == -10
    assert counters == []  # no limits configured, nothing counted


async def test_free_messages_need_no_funds(runtime: Runtime, client: httpx2.AsyncClient) -> None:
    await setup(runtime, credit_minor=0, price="0")
    assert await send(client) == "MSG_OK"


@pytest.mark.parametrize("msisdn", ["0881234567", "12", "+35912", "abc", "359 88 123"])
async def test_invalid_msisdn(runtime: Runtime, client: httpx2.AsyncClient, msisdn: str) -> None:
    await setup(runtime)
    assert await send(client, msisdn=msisdn) == "INVALID_MSISDN"


async def test_international_spellings_are_accepted(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    await setup(runtime)
    for msisdn in ("+359881234567", "00359881234567", "359 88 123 4567"):
        assert await send(client, msisdn=msisdn) == "MSG_OK"
    async with runtime.sessions() as session:
        numbers = set((await session.execute(select(MtMessage.msisdn))).scalars())
    assert numbers == {BG_NUMBER}


async def test_opted_out_recipient_answers_invalid_msisdn(
    runtime: Runtime, client: httpx2.AsyncClient, clock: FakeClock
) -> None:
    await setup(runtime)
    async with runtime.sessions() as session, session.begin():
        await add_opt_out(session, SERVICE_ID, BG_NUMBER, reason=BY_MERCHANT, now=clock.now())
    assert await send(client) == "INVALID_MSISDN"
    assert await send(client, msisdn="359887654321") == "MSG_OK"


async def test_no_route_answers_invalid_msisdn(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    await setup(runtime)
    # A valid German mobile number: no route for DE and no default route.
    assert await send(client, msisdn="4915112345678") == "INVALID_MSISDN"
    async with runtime.sessions() as session, session.begin():
        await add_route(session, None, "sim-bg")
    assert await send(client, msisdn="4915112345678") == "MSG_OK"


async def test_limit_day_week_month(
    runtime: Runtime, client: httpx2.AsyncClient, clock: FakeClock
) -> None:
    await setup(runtime, limit_day=2, limit_week=3, limit_month=4)
    assert [await send(client) for _ in range(3)] == ["MSG_OK", "MSG_OK", "LIMIT_DAY"]
    clock.advance(86400)  # Wednesday
    assert [await send(client) for _ in range(2)] == ["MSG_OK", "LIMIT_WEEK"]
    clock.advance(6 * 86400)  # Tuesday of the next week, still March
    assert [await send(client) for _ in range(2)] == ["MSG_OK", "LIMIT_MONTH"]
    assert await count_mts(runtime) == 4


async def test_limit_delay(runtime: Runtime, client: httpx2.AsyncClient, clock: FakeClock) -> None:
    await setup(runtime, min_interval_seconds=30)
    assert await send(client) == "MSG_OK"
    clock.advance(29)
    assert await send(client) == "LIMIT_DELAY"
    assert await send(client, msisdn="359887654321") == "LIMIT_DELAY"  # per service
    clock.advance(1)
    assert await send(client) == "MSG_OK"


async def test_limit_delay_per_recipient(
    runtime: Runtime, client: httpx2.AsyncClient, clock: FakeClock
) -> None:
    await setup(runtime, min_interval_seconds=30, min_interval_scope="recipient")
    assert await send(client) == "MSG_OK"
    assert await send(client) == "LIMIT_DELAY"
    assert await send(client, msisdn="359887654321") == "MSG_OK"
    clock.advance(30)
    assert await send(client) == "MSG_OK"


async def test_refused_message_moves_no_counter(
    runtime: Runtime, client: httpx2.AsyncClient, clock: FakeClock
) -> None:
    await setup(runtime, limit_day=5, limit_week=1)
    assert await send(client) == "MSG_OK"
    assert await send(client) == "LIMIT_WEEK"  # the day counter moved, then was rolled back
    async with runtime.sessions() as session:
        counts = dict(
            (await session.execute(select(QuotaCounter.window, QuotaCounter.count))).all()
        )
    assert counts == {"d:2026-03-10": 1, "w:2026-W11": 1}


async def test_ban_ip_temp_after_repeated_failures(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    await setup(runtime, ip_allowlist=["10.0.0.0/8"])
    answers = [await send(client) for _ in range(10)]
    assert answers == ["INVALID_IP"] * 10
    assert await send(client) == "BAN_IP_TEMP"
    assert await send(client, service_id="5") == "BAN_IP_TEMP"


async def test_second_service_of_the_merchant_is_independent(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    await setup(runtime, limit_day=1)
    async with runtime.sessions() as session, session.begin():
        await add_bulk_service(session, 202, limit_day=1)
    assert await send(client) == "MSG_OK"
    assert await send(client) == "LIMIT_DAY"
    assert await send(client, service_id=202) == "MSG_OK"


async def test_windows_1251_text_is_read_as_such(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    await setup(runtime)
    query = f"user_id={MERCHANT_ID}&service_id={SERVICE_ID}&msisdn={BG_NUMBER}&text=" + "".join(
        f"%{b:02X}" for b in "Фактура".encode("cp1251")
    )
    response = await client.get(f"{URL}?{query}")
    assert response.text == "MSG_OK"
    async with runtime.sessions() as session:
        text = (await session.execute(select(MtMessage.text))).scalar_one()
    assert text == "Фактура"
