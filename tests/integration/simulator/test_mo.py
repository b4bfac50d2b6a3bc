"""Injected MOs: deliver_sm to a bound receiver of the operator, priced by the short number."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from tests.integration.simulator.sim_env import (
    BindReceiver,
    BindTransmitter,
    bound_esme,
    make_simulator,
)

from smsgate.domain.concat import Reassembler, split_short_message
from smsgate.domain.text import decode
from smsgate.simulator import Simulator, SimulatorError, SimulatorOptions
from smsgate.smpp.pdu import DeliverSm

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _join(parts: list[DeliverSm]) -> str:
    reassembler = Reassembler()
    for part in parts:
        header, payload = split_short_message(part.short_message, part.esm_class)
        if header is None or header.concat is None:
            return decode(payload, part.data_coding)
        whole = reassembler.add("mo", header.concat, payload, part.data_coding, NOW)
        if whole is not None:
            return whole.text
    raise AssertionError("parts missing")


async def test_an_mo_reaches_the_bound_receiver(sim: Simulator) -> None:
    async with bound_esme(sim.smpp_port, BindReceiver) as esme:
        result = await sim.inject_mo("+359888123456", "1851", "KOD", operator="sim-bg")
        mo = await esme.next_delivery()
    assert result.status == "acknowledged"
    assert (result.price, result.currency, result.parts) == ("2.40", "BGN", 1)
    assert (mo.source_addr, mo.destination_addr, mo.esm_class) == ("359888123456", "1851", 0)
    assert (mo.short_message, mo.data_coding) == (b"KOD", 0)
    assert sim.stats()["mos_injected"] == 1


@pytest.mark.parametrize(
    ("text", "data_coding", "parts"),
    [
        ("STOP " + "x" * 300, 0, 2),
        ("Абонамент " * 20, 8, 3),
    ],
)
async def test_a_long_mo_is_split_into_udh_parts(
    sim: Simulator, text: str, data_coding: int, parts: int
) -> None:
    async with bound_esme(sim.smpp_port) as esme:
        result = await sim.inject_mo("359888123456", "1851", text)
        delivered = [await esme.next_delivery() for _ in range(result.parts)]
    assert result.parts == parts
    assert all(p.esm_class == 0x40 and p.data_coding == data_coding for p in delivered)
    assert _join(delivered) == text


async def test_an_mo_without_a_receiver_is_refused(sim: Simulator) -> None:
    async with bound_esme(sim.smpp_port, BindTransmitter):
        with pytest.raises(SimulatorError) as error:
            await sim.inject_mo("359888123456", "1851", "KOD")
    assert (error.value.code, error.value.http_status) == ("no_receiver", 409)
    assert sim.stats()["mos_injected"] == 0


async def test_an_mo_goes_to_the_operator_of_the_short_number(sim: Simulator) -> None:
    async with (
        bound_esme(sim.smpp_port) as bg,
        bound_esme(sim.smpp_port, system_id="ro-gw", password="ro-pw") as ro,
    ):
        with pytest.raises(SimulatorError) as error:
            await sim.inject_mo("40722000111", "1919", "HI")
        assert error.value.code == "ambiguous_short_number"
        result = await sim.inject_mo("40722000111", "1919", "HI", operator="sim-ro")
        assert (result.price, result.currency) == ("5.00", "RON")
        assert (await ro.next_delivery()).short_message == b"HI"
        assert bg.delivered.empty()


@pytest.mark.parametrize(
    ("short_number", "operator", "code"),
    [("9999", None, "unknown_short_number"), ("1851", "nope", "unknown_operator")],
)
async def test_unknown_numbers_and_operators(
    sim: Simulator, short_number: str, operator: str | None, code: str
) -> None:
    with pytest.raises(SimulatorError) as error:
        await sim.inject_mo("359888123456", short_number, "x", operator=operator)
    assert (error.value.code, error.value.http_status) == (code, 404)


async def test_the_esme_answer_is_reported(sim: Simulator) -> None:
    async with bound_esme(sim.smpp_port) as esme:
        esme.answer_status = 0x64  # ESME_RX_T_APPN: try again later
        result = await sim.inject_mo("359888123456", "1851", "KOD")
    assert result.status == "refused"
    assert result.statuses == [0x64]


async def test_an_mo_is_charged_to_a_handset_with_a_balance(sim: Simulator) -> None:
    sim.set_balance("359888123456", 300, "BGN")
    async with bound_esme(sim.smpp_port) as esme:
        await sim.inject_mo("359888123456", "1851", "KOD")
        await esme.next_delivery()
        with pytest.raises(SimulatorError) as error:
            await sim.inject_mo("359888123456", "1851", "KOD")
    assert (error.value.code, error.value.http_status) == ("insufficient_funds", 402)
    handset = sim.handset("359888123456")
    assert handset.balance_minor == 60
    assert [c.amount_minor for c in handset.charges] == [240]


async def test_wait_false_returns_before_the_answer(sim: Simulator) -> None:
    async with bound_esme(sim.smpp_port) as esme:
        result = await sim.inject_mo("359888123456", "1851", "KOD", wait=False)
        assert result.status == "queued"
        assert (await esme.next_delivery()).short_message == b"KOD"


async def test_a_receiver_that_never_answers_times_out(sim: Simulator) -> None:
    async with bound_esme(sim.smpp_port) as esme:
        blocked = asyncio.Event()

        async def never(pdu: object) -> None:
            await blocked.wait()

        assert esme.session is not None
        esme.session.handler = never  # type: ignore[assignment]
        with pytest.raises(SimulatorError) as error:
            await sim.inject_mo("359888123456", "1851", "KOD", ack_timeout=0.2)
        blocked.set()
    assert (error.value.code, error.value.http_status) == ("timeout", 504)


async def test_a_redelivered_mo_is_the_same_pdu_again_and_charged_once(sim: Simulator) -> None:
    sim.set_balance("359888123456", 1000, "BGN")
    async with bound_esme(sim.smpp_port) as esme:
        result = await sim.inject_mo("359888123456", "1851", "KOD", copies=2)
        first, second = await esme.next_delivery(), await esme.next_delivery()
    assert result.statuses == [0, 0]
    assert first.sequence_number != second.sequence_number
    first.sequence_number = second.sequence_number
    assert first == second
    assert sim.handset("359888123456").balance_minor == 760


async def test_mo_parts_can_carry_message_ids() -> None:
    sim = make_simulator(SimulatorOptions(mo_message_ids=True), dlr_id_format="hex")
    await sim.start("127.0.0.1", 0)
    try:
        async with bound_esme(sim.smpp_port) as esme:
            result = await sim.inject_mo("359888123456", "1851", "y" * 200)
            parts = [await esme.next_delivery() for _ in range(result.parts)]
    finally:
        await sim.stop()
    ids = [p.tlvs.receipted_message_id for p in parts]
    assert ids == result.message_ids and len(set(ids)) == 2
    assert all(p.esm_class & 0x3C == 0 for p in parts)  # not receipts: ordinary MOs
    assert all(int(i, 16) >= 0x2000_0000 for i in ids)  # the operator writes ids in hex
