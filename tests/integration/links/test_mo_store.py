"""Redeliveries and concatenated MOs in the database, on SQLite and PostgreSQL.

Each step runs in its own transaction, as one acknowledged deliver_sm does on a link, so a
"crash" between steps is simply not running the next one with the same objects.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import add_operator, add_short_number

from smsgate.domain.concat import ESM_UDHI, build_udh, concat_infos
from smsgate.domain.text import Alphabet, Concat, segment
from smsgate.links import mo_store
from smsgate.links.incoming import read_mo
from smsgate.links.mo_store import StoredMo
from smsgate.smpp import DeliverSm
from smsgate.store.models import MoFragment, MoMessage, MoUnconfirmedAck

T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=10)
OP = "op-bg"


async def _setup(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session, session.begin():
        await add_operator(session, OP, kind="smpp")
        await add_short_number(session, "1851", OP)


def mo_pdu(text: str, msisdn: str = "359888111222") -> DeliverSm:
    return DeliverSm(source_addr=msisdn, destination_addr="1851", short_message=text.encode())


async def whole(
    sessionmaker: async_sessionmaker[AsyncSession],
    pdu: DeliverSm,
    connection: str,
    at: datetime = T,
) -> StoredMo:
    part = read_mo(pdu)
    async with sessionmaker() as session, session.begin():
        return await mo_store.store_whole_mo(
            session,
            operator_id=OP,
            part=part,
            text=part.text(Alphabet.GSM7),
            connection_id=connection,
            now=at,
            redelivery_window=WINDOW,
            handlers={},
        )


async def rows(sessionmaker: async_sessionmaker[AsyncSession], model: type) -> int:
    async with sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def test_a_redelivery_on_a_new_connection_is_recognised(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await _setup(sessionmaker)
    first = await whole(sessionmaker, mo_pdu("KOD"), "conn-a")
    assert first.outcome is not None and not first.outcome.duplicate
    # conn-a broke before the SMSC confirmed reading our response: it delivers again.
    again = await whole(sessionmaker, mo_pdu("KOD"), "conn-b", T + timedelta(seconds=30))
    assert again.redelivery and again.outcome is not None and again.outcome.duplicate
    assert again.outcome.mo_id == first.outcome.mo_id
    # The guard moved to conn-b; the subscriber's next identical message is a new one.
    third = await whole(sessionmaker, mo_pdu("KOD"), "conn-b", T + timedelta(seconds=40))
    assert third.outcome is not None and not third.outcome.duplicate
    assert await rows(sessionmaker, MoMessage) == 2


async def test_identical_messages_on_one_connection_are_all_new(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await _setup(sessionmaker)
    for second in range(3):
        stored = await whole(sessionmaker, mo_pdu("SAFE"), "conn-a", T + timedelta(seconds=second))
        assert stored.outcome is not None and not stored.outcome.duplicate
    assert await rows(sessionmaker, MoMessage) == 3


async def test_a_confirmed_acknowledgement_guards_nothing(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await _setup(sessionmaker)
    first = await whole(sessionmaker, mo_pdu("KOD"), "conn-a")
    assert first.ack_guard_id is not None
    async with sessionmaker() as session, session.begin():
        await mo_store.confirm_acks(session, [first.ack_guard_id])
    later = await whole(sessionmaker, mo_pdu("KOD"), "conn-b", T + timedelta(seconds=5))
    assert later.outcome is not None and not later.outcome.duplicate


async def test_guards_expire_after_the_window(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await _setup(sessionmaker)
    await whole(sessionmaker, mo_pdu("KOD"), "conn-a")
    late = await whole(sessionmaker, mo_pdu("KOD"), "conn-b", T + WINDOW + timedelta(seconds=1))
    assert late.outcome is not None and not late.outcome.duplicate
    async with sessionmaker() as session, session.begin():
        parts, guards = await mo_store.expire(
            session,
            operator_id=OP,
            now=T + 2 * WINDOW + timedelta(seconds=2),
            fragment_max_age=timedelta(hours=1),
            redelivery_window=WINDOW,
        )
    assert (parts, guards) == (0, 2)
    assert await rows(sessionmaker, MoUnconfirmedAck) == 0


async def test_an_id_given_by_the_smsc_wins(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    from smsgate.smpp import Tlvs

    await _setup(sessionmaker)
    pdu = mo_pdu("KOD")
    pdu.tlvs = Tlvs(receipted_message_id="MO-77")
    first = await whole(sessionmaker, pdu, "conn-a")
    again = await whole(sessionmaker, pdu, "conn-a")
    assert first.ack_guard_id is None
    assert again.outcome is not None and again.outcome.duplicate


async def batch(
    sessionmaker: async_sessionmaker[AsyncSession],
    deliveries: list[tuple[DeliverSm, str]],
    at: datetime = T,
) -> list[StoredMo]:
    """Whole MOs stored together, as a link stores the deliver_sm of one batch."""
    mos = []
    for pdu, connection in deliveries:
        part = read_mo(pdu)
        mos.append(mo_store.WholeMo(part, part.text(Alphabet.GSM7), connection))
    async with sessionmaker() as session, session.begin():
        return await mo_store.store_whole_mos(
            session, operator_id=OP, mos=mos, now=at, redelivery_window=WINDOW, handlers={}
        )


async def test_a_batch_of_identical_messages_on_one_connection_is_all_new(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await _setup(sessionmaker)
    stored = await batch(sessionmaker, [(mo_pdu("SAFE"), "conn-a")] * 3)
    assert [s.outcome is not None and not s.outcome.duplicate for s in stored] == [True] * 3
    assert len({s.ack_guard_id for s in stored}) == 3 and None not in {
        s.ack_guard_id for s in stored
    }
    assert await rows(sessionmaker, MoMessage) == 3
    assert await rows(sessionmaker, MoUnconfirmedAck) == 3


async def test_a_redelivery_in_a_batch_is_recognised(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await _setup(sessionmaker)
    (first,) = await batch(sessionmaker, [(mo_pdu("KOD"), "conn-a")])
    stored = await batch(
        sessionmaker,
        [(mo_pdu("hello", "359888000001"), "conn-b"), (mo_pdu("KOD"), "conn-b")],
        T + timedelta(seconds=30),
    )
    assert stored[0].outcome is not None and not stored[0].outcome.duplicate
    assert stored[1].redelivery and stored[1].outcome is not None
    assert stored[1].outcome.duplicate and first.outcome is not None
    assert stored[1].outcome.mo_id == first.outcome.mo_id
    assert await rows(sessionmaker, MoMessage) == 2


async def test_an_smsc_id_twice_in_a_batch_is_one_mo(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    from smsgate.smpp import Tlvs

    await _setup(sessionmaker)
    pdu = mo_pdu("KOD")
    pdu.tlvs = Tlvs(receipted_message_id="MO-78")
    stored = await batch(sessionmaker, [(pdu, "conn-a"), (mo_pdu("hi"), "conn-a"), (pdu, "conn-a")])
    outcomes = [s.outcome for s in stored]
    assert all(outcome is not None for outcome in outcomes)
    assert [o.duplicate for o in outcomes if o is not None] == [False, False, True]
    assert stored[0].ack_guard_id is None and stored[1].ack_guard_id is not None
    assert await rows(sessionmaker, MoMessage) == 2


def part_pdus(text: str, ref: int) -> list[DeliverSm]:
    parts = segment(text, concat=Concat.UDH8)
    infos = concat_infos(parts.parts, ref)
    return [
        DeliverSm(
            source_addr="359888111222",
            destination_addr="1851",
            esm_class=ESM_UDHI,
            data_coding=parts.data_coding,
            short_message=build_udh(info) + payload,
        )
        for info, payload in zip(infos, parts.payloads, strict=True)
    ]


async def fragment(
    sessionmaker: async_sessionmaker[AsyncSession], pdu: DeliverSm, at: datetime = T
) -> StoredMo:
    async with sessionmaker() as session, session.begin():
        return await mo_store.store_fragment(
            session,
            operator_id=OP,
            part=read_mo(pdu),
            now=at,
            default_alphabet=Alphabet.GSM7,
            handlers={},
        )


LONG = "Part of a long message from a subscriber, in plain GSM letters. " * 5


async def test_parts_survive_between_transactions_and_join_once(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await _setup(sessionmaker)
    first, second, third = part_pdus(LONG, ref=7)
    assert (await fragment(sessionmaker, third)).outcome is None
    assert (await fragment(sessionmaker, first)).outcome is None
    redelivered = await fragment(sessionmaker, first)
    assert redelivered.redelivery and redelivered.outcome is None
    assert await rows(sessionmaker, MoFragment) == 2
    done = await fragment(sessionmaker, second)
    assert done.outcome is not None and not done.outcome.duplicate
    async with sessionmaker() as session:
        mo = (await session.execute(select(MoMessage))).scalar_one()
    assert mo.text == LONG
    assert await rows(sessionmaker, MoFragment) == 0
    # A part redelivered after the message was made starts nothing that can complete.
    assert (await fragment(sessionmaker, third)).outcome is None
    assert await rows(sessionmaker, MoMessage) == 1


async def test_a_reused_reference_drops_the_stale_parts(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await _setup(sessionmaker)
    old = part_pdus(LONG, ref=9)
    new_text = LONG.upper()
    new = part_pdus(new_text, ref=9)
    await fragment(sessionmaker, old[0])  # the rest of the old message never came
    for pdu in new:
        stored = await fragment(sessionmaker, pdu, T + timedelta(hours=2))
    assert stored.outcome is not None
    async with sessionmaker() as session:
        mo = (await session.execute(select(MoMessage))).scalar_one()
    assert mo.text == new_text


async def test_stale_parts_expire(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    await _setup(sessionmaker)
    await fragment(sessionmaker, part_pdus(LONG, ref=3)[0])
    async with sessionmaker() as session, session.begin():
        parts, _ = await mo_store.expire(
            session,
            operator_id=OP,
            now=T + timedelta(hours=25),
            fragment_max_age=timedelta(hours=24),
            redelivery_window=WINDOW,
        )
    assert parts == 1
