"""MOs from the simulator through a real link: stored before acknowledged, long ones joined,
repeated ones told apart from redeliveries."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from tests.factories import add_merchant, add_service
from tests.integration.links.link_env import (
    OPERATOR,
    eventually,
    provision,
    settings_for,
    start_link,
)

from smsgate.runtime import Runtime
from smsgate.services.mo import MoContext
from smsgate.simulator import Simulator
from smsgate.smpp import CommandStatus
from smsgate.store.models import MoFragment, MoMessage, MoUnconfirmedAck, Service, ShortNumber

LONG_UCS2 = "Здравей! Това е дълго съобщение от абонат, в няколко части. " * 3


async def mos(runtime: Runtime) -> list[MoMessage]:
    async with runtime.sessions() as session:
        rows = await session.execute(select(MoMessage).order_by(MoMessage.id))
        return list(rows.scalars())


async def count(runtime: Runtime, model: Any) -> int:
    async with runtime.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def test_an_mo_is_stored_before_it_is_acknowledged(
    runtime: Runtime, simulator: Simulator
) -> None:
    await provision(runtime.sessions, simulator.smpp_port)
    link = await start_link(runtime, settings_for(simulator.smpp_port))
    try:
        await simulator.wait_for_receiver(OPERATOR)
        result = await simulator.inject_mo("359888111222", "1851", "KOD please")
        # The response came back, so the MO is committed already: no polling needed.
        assert result.status == "acknowledged"
        (mo,) = await mos(runtime)
        assert (mo.operator_id, mo.msisdn, mo.short_number, mo.text) == (
            OPERATOR,
            "359888111222",
            "1851",
            "KOD please",
        )
        assert mo.operator_message_id.startswith("fp:")
        assert link.link.state.mo_received == 1
    finally:
        await link.stop()


async def test_a_long_mo_is_joined_from_its_parts(runtime: Runtime, simulator: Simulator) -> None:
    await provision(runtime.sessions, simulator.smpp_port)
    link = await start_link(runtime, settings_for(simulator.smpp_port))
    try:
        result = await simulator.inject_mo("359888111222", "1851", LONG_UCS2)
        assert result.parts > 1 and result.status == "acknowledged"
        (mo,) = await mos(runtime)
        assert mo.text == LONG_UCS2
        assert mo.operator_message_id.startswith("cat:")
        assert mo.details["parts"] == result.parts
        assert await count(runtime, MoFragment) == 0
    finally:
        await link.stop()


async def test_the_same_text_twice_is_two_messages(runtime: Runtime, simulator: Simulator) -> None:
    # A "safe" payment is the same keyword sent N times: none of them is a redelivery.
    await provision(runtime.sessions, simulator.smpp_port)
    link = await start_link(runtime, settings_for(simulator.smpp_port))
    try:
        for _ in range(3):
            result = await simulator.inject_mo("359888111222", "1851", "SAFE")
            assert result.status == "acknowledged"
        assert [mo.text for mo in await mos(runtime)] == ["SAFE"] * 3
        # Each acknowledgement was confirmed by an enquire_link answered after it.
        await eventually(lambda: _none_left(runtime))
    finally:
        await link.stop()


async def _none_left(runtime: Runtime) -> bool:
    return await count(runtime, MoUnconfirmedAck) == 0


async def test_an_mo_whose_processing_fails_is_refused_temporarily(
    runtime: Runtime, simulator: Simulator
) -> None:
    await provision(runtime.sessions, simulator.smpp_port)
    async with runtime.sessions() as session, session.begin():
        number = (await session.execute(select(ShortNumber))).scalar_one()
        await add_merchant(session)
        await add_service(session, 9, type="exploding", keyword="BOOM", short_numbers=[number])

    async def explode(
        session: AsyncSession, mo: MoMessage, service: Service, context: MoContext
    ) -> None:
        raise RuntimeError("the service is broken")

    runtime.mo_handlers["exploding"] = explode
    link = await start_link(runtime, settings_for(simulator.smpp_port))
    try:
        refused = await simulator.inject_mo("359888111222", "1851", "BOOM")
        assert refused.statuses == [CommandStatus.ESME_RX_T_APPN]
        fine = await simulator.inject_mo("359888111222", "1851", "hello")
        assert fine.status == "acknowledged"
        assert [mo.text for mo in await mos(runtime)] == ["hello"]
        assert link.link.state.errors >= 1
    finally:
        await link.stop()


async def test_mos_reach_a_receiver_bound_on_its_own(
    runtime: Runtime, simulator: Simulator
) -> None:
    await provision(runtime.sessions, simulator.smpp_port)
    settings = settings_for(simulator.smpp_port, bind_mode="transmitter_receiver")
    link = await start_link(runtime, settings)
    try:
        result = await simulator.inject_mo("359888111222", "1851", LONG_UCS2)
        assert result.status == "acknowledged"
        assert [mo.text for mo in await mos(runtime)] == [LONG_UCS2]
    finally:
        await link.stop()


async def test_mos_arriving_together_each_get_their_code_and_reply(
    runtime: Runtime, simulator: Simulator
) -> None:
    from smsgate.services.access_codes import make_mo_handler
    from smsgate.store.models import AccessCode

    await provision(runtime.sessions, simulator.smpp_port)
    async with runtime.sessions() as session, session.begin():
        number = (await session.execute(select(ShortNumber))).scalar_one()
        await add_merchant(session)
        await add_service(session, 102, keyword="KOD", short_numbers=[number])
    runtime.mo_handlers["access_code"] = make_mo_handler()
    link = await start_link(runtime, settings_for(simulator.smpp_port))
    phones = [f"35988800{i:04d}" for i in range(40)]
    try:
        results = await asyncio.gather(
            *(simulator.inject_mo(phone, "1851", "KOD") for phone in phones)
        )
        assert {result.status for result in results} == {"acknowledged"}
        assert await count(runtime, MoMessage) == 40
        assert await count(runtime, AccessCode) == 40
        await eventually(lambda: _all_answered(simulator, phones))
        async with runtime.sessions() as session:
            codes = {row.msisdn: row.code for row in (await session.scalars(select(AccessCode)))}
        for phone in phones:
            assert simulator.inbox(phone)[0].text == f"Your code: {codes[phone]}"
    finally:
        await link.stop()


async def _all_answered(simulator: Simulator, phones: list[str]) -> bool:
    return all(simulator.inbox(phone) for phone in phones)
