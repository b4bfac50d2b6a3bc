"""The link's MO batches on the direct path (``links/mo_direct.py``), on SQLite and PostgreSQL:
the same rows as the ordinary path, a batch it cannot take left untouched for the ordinary
path, and the replies claimed in the MOs' transaction and sent without a claim of their own."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from tests.factories import add_merchant, add_operator, add_service, add_short_number
from tests.integration.links.link_env import (
    eventually,
    provision,
    settings_for,
    start_link,
)

from smsgate.links import mo_store
from smsgate.links.incoming import read_mo
from smsgate.links.mo_direct import DirectStore, NotDirect, PostgresDirect, direct_store
from smsgate.links.pdus import ClaimedMt
from smsgate.runtime import Runtime
from smsgate.services.access_codes import make_mo_handler
from smsgate.services.mo import MoContext
from smsgate.simulator import Simulator
from smsgate.smpp import DeliverSm
from smsgate.store import ledger
from smsgate.store.models import (
    AccessCode,
    LedgerEntry,
    MoMessage,
    MoUnconfirmedAck,
    MtMessage,
    ShortNumber,
)

T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=10)
OP = "op-bg"
Outcome = tuple[list[mo_store.StoredMo], list[ClaimedMt]]


async def _setup(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session, session.begin():
        await add_operator(session, OP, kind="smpp")
        number = await add_short_number(session, "1851", OP)
        await add_merchant(session)
        await add_service(session, 102, keyword="KOD", short_numbers=[number])


def _mos(msisdns: Sequence[str], connection: str = "c1") -> list[mo_store.WholeMo]:
    parts = [
        read_mo(DeliverSm(source_addr=m, destination_addr="1851", short_message=b"KOD"))
        for m in msisdns
    ]
    return [mo_store.WholeMo(part, "KOD", connection) for part in parts]


def _transaction(
    mos: list[mo_store.WholeMo], confirmed: Sequence[int] = (), handlers: Any = None
) -> Any:
    async def run(session: AsyncSession) -> Outcome:
        stored = await mo_store.store_whole_mos(
            session,
            operator_id=OP,
            mos=mos,
            now=T,
            redelivery_window=WINDOW,
            handlers=handlers or {"access_code": make_mo_handler()},
            confirmed=confirmed,
        )
        ids = [one.outcome.mo_id for one in stored if one.outcome is not None]
        return stored, await mo_store.claim_replies(session, OP, ids, T)

    return run


async def _ordinary(sessionmaker: async_sessionmaker[AsyncSession], body: Any) -> Outcome:
    async with sessionmaker() as session, session.begin():
        result: Outcome = await body(session)
        return result


@pytest.fixture
async def direct(engine: AsyncEngine) -> Any:
    store = direct_store(engine)
    assert store is not None
    yield store
    await store.aclose()


async def _count(sessionmaker: async_sessionmaker[AsyncSession], model: type) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def _shape(sessionmaker: async_sessionmaker[AsyncSession], mo_ids: list[int]) -> list[Any]:
    """What an MO left behind, without its ids, times and drawn code."""
    shapes = []
    async with sessionmaker() as session:
        for mo_id in mo_ids:
            mo = await session.get_one(MoMessage, mo_id)
            code = await session.get_one(AccessCode, mo.details["code_id"])
            mt = await session.get_one(MtMessage, mo.details["reply_mt_id"])
            entries = await session.execute(
                select(LedgerEntry.account, LedgerEntry.kind, LedgerEntry.amount_minor).where(
                    LedgerEntry.ref == f"mo:{mo_id}"
                )
            )
            shapes.append(
                (
                    (mo.status, mo.service_id, mo.keyword, mo.price_minor, sorted(mo.details)),
                    (code.mo_id == mo_id, code.kind, code.status, code.uses_left),
                    (mt.status, mt.attempts, mt.text == f"Your code: {code.code}", mt.encoding),
                    (mt.mo_id == mo_id, mt.idempotency_key == f"code-reply:{mo_id}"),
                    mt.details == {"code_id": code.id},
                    sorted(tuple(row) for row in entries),
                )
            )
    return shapes


async def test_the_direct_path_writes_what_the_ordinary_path_writes(
    sessionmaker: async_sessionmaker[AsyncSession], direct: DirectStore
) -> None:
    await _setup(sessionmaker)
    plain, plain_claimed = await _ordinary(
        sessionmaker, _transaction(_mos(["359888000001", "359888000002"]))
    )
    fast, fast_claimed = await direct.run(_transaction(_mos(["359888000003", "359888000004"])))
    plain_ids = [one.outcome.mo_id for one in plain if one.outcome is not None]
    fast_ids = [one.outcome.mo_id for one in fast if one.outcome is not None]
    assert len(fast_ids) == 2
    assert await _shape(sessionmaker, fast_ids) == await _shape(sessionmaker, plain_ids)
    assert all(one.ack_guard_id is not None for one in fast)
    assert [(mt.msisdn, mt.sender, mt.attempts) for mt in fast_claimed] == [
        ("359888000003", "1851", 1),
        ("359888000004", "1851", 1),
    ]
    assert len(plain_claimed) == 2
    async with sessionmaker() as session:
        assert await ledger.balance_mismatches(session) == []
        assert await ledger.balance(session, 1) == 4 * 120


async def test_confirmed_guards_go_with_the_batch(
    sessionmaker: async_sessionmaker[AsyncSession], direct: DirectStore
) -> None:
    await _setup(sessionmaker)
    first, _ = await direct.run(_transaction(_mos(["359888000001"])))
    assert await _count(sessionmaker, MoUnconfirmedAck) == 1
    guard = first[0].ack_guard_id
    assert guard is not None
    second = _mos(["359888000002"])
    await direct.run(_transaction(second, confirmed=[guard]))
    async with sessionmaker() as session:
        left = list(await session.scalars(select(MoUnconfirmedAck.fingerprint)))
    assert left == [second[0].part.fingerprint]


async def test_a_redelivery_is_left_to_the_ordinary_path(
    sessionmaker: async_sessionmaker[AsyncSession], direct: DirectStore
) -> None:
    await _setup(sessionmaker)
    # The same MO on a connection that broke before its response was confirmed.
    first, _ = await direct.run(_transaction(_mos(["359888000001"], connection="old")))
    other, _ = await direct.run(_transaction(_mos(["359888000002"], connection="old")))
    confirmed = other[0].ack_guard_id
    assert confirmed is not None
    with pytest.raises(NotDirect):
        await direct.run(
            _transaction(_mos(["359888000001"], connection="new"), confirmed=[confirmed])
        )
    # Rolled back: the confirmed guard is still there, no MO was added.
    assert await _count(sessionmaker, MoUnconfirmedAck) == 2
    assert await _count(sessionmaker, MoMessage) == 2
    again, _ = await _ordinary(sessionmaker, _transaction(_mos(["359888000001"], connection="new")))
    assert again[0].redelivery
    assert again[0].outcome is not None and again[0].outcome.mo_id == first[0].outcome.mo_id  # type: ignore[union-attr]
    assert await _count(sessionmaker, AccessCode) == 2


async def test_a_handler_of_one_mo_at_a_time_is_left_to_the_ordinary_path(
    sessionmaker: async_sessionmaker[AsyncSession], direct: DirectStore
) -> None:
    await _setup(sessionmaker)
    called: list[int] = []

    async def one_at_a_time(
        session: AsyncSession, mo: MoMessage, service: object, context: MoContext
    ) -> None:
        called.append(mo.id)

    with pytest.raises(NotDirect):
        await direct.run(
            _transaction(_mos(["359888000001"]), handlers={"access_code": one_at_a_time})
        )
    assert called == []
    assert await _count(sessionmaker, MoMessage) == 0


async def test_replies_to_mos_leave_without_a_claim(runtime: Runtime, simulator: Simulator) -> None:
    await provision(runtime.sessions, simulator.smpp_port)
    async with runtime.sessions() as session, session.begin():
        number = (await session.execute(select(ShortNumber))).scalar_one()
        await add_merchant(session)
        await add_service(session, 102, keyword="KOD", short_numbers=[number])
    runtime.mo_handlers["access_code"] = make_mo_handler()
    link = await start_link(runtime, settings_for(simulator.smpp_port))
    submitter = link.link.submitter
    claimed_by_claims: list[int] = []
    claim = submitter.claim

    async def counted(limit: int) -> list[ClaimedMt]:
        found = await claim(limit)
        claimed_by_claims.extend(mt.id for mt in found)
        return found

    submitter.claim = counted  # type: ignore[method-assign]
    phones = [f"35988810{i:04d}" for i in range(6)]
    try:
        for phone in phones:
            await simulator.inject_mo(phone, "1851", "KOD")
        await eventually(lambda: _all_answered(simulator, phones))
        assert link.link.receiver.direct_batches >= 1
        async with runtime.sessions() as session:
            replies = list(await session.scalars(select(MtMessage.id)))
        assert len(replies) == len(phones)
        assert not set(replies) & set(claimed_by_claims)
    finally:
        await link.stop()


async def test_replies_handed_to_a_stopped_submitter_are_queued_again(
    runtime: Runtime, simulator: Simulator
) -> None:
    await provision(runtime.sessions, simulator.smpp_port)
    link = await start_link(runtime, settings_for(simulator.smpp_port))
    await link.stop()
    async with runtime.sessions() as session, session.begin():
        mt = MtMessage(
            operator_id="sim-test",
            msisdn="359888000001",
            sender="1851",
            text="hi",
            encoding="gsm7",
            parts=1,
            status="submitting",
            attempts=1,
            next_attempt_at=T,
            created_at=T,
            updated_at=T,
        )
        session.add(mt)
    submitter = link.link.submitter
    submitter.take([ClaimedMt(mt.id, mt.msisdn, mt.sender, mt.text, mt.encoding, 1)])
    await submitter.writer.flush()
    await asyncio.sleep(0)
    async with runtime.sessions() as session:
        row = await session.get_one(MtMessage, mt.id)
    assert row.status == "queued"


async def _all_answered(simulator: Simulator, phones: list[str]) -> bool:
    return all(simulator.inbox(phone) for phone in phones)


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_a_batch_on_postgresql_takes_few_round_trips(
    sessionmaker: async_sessionmaker[AsyncSession],
    direct: DirectStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each statement is a round trip to the server (about 0.3 ms even idle): an MO batch of
    the usual kind (whole MOs to an access-code service, confirmed guards to delete) takes
    BEGIN, three statements and COMMIT (eleven before they were combined)."""
    assert isinstance(direct, PostgresDirect)
    await _setup(sessionmaker)
    first, _ = await direct.run(_claiming(_mos(["359888000001"])))
    guard = first[0].ack_guard_id
    assert guard is not None
    sent: list[str] = []
    for name in ("execute", "fetch", "fetchrow", "fetchval", "executemany"):
        method = getattr(asyncpg.Connection, name)

        def counting(self: Any, query: str, *args: Any, _method: Any = method) -> Any:
            sent.append(query)
            return _method(self, query, *args)

        monkeypatch.setattr(asyncpg.Connection, name, counting)
    stored, claimed = await direct.run(
        _claiming(_mos([f"35988800001{i}" for i in range(5)]), confirmed=[guard])
    )
    monkeypatch.undo()
    assert len(claimed) == 5
    assert all(one.outcome is not None and one.outcome.status == "processed" for one in stored)
    assert len(sent) == ROUND_TRIPS, sent
    assert (sent[0], sent[-1]) == ("BEGIN;", "COMMIT;")


ROUND_TRIPS = 5


def _claiming(mos: list[mo_store.WholeMo], confirmed: Sequence[int] = ()) -> Any:
    async def run(session: AsyncSession) -> Outcome:
        return await mo_store.store_and_claim(
            session,
            operator_id=OP,
            mos=mos,
            now=T,
            redelivery_window=WINDOW,
            handlers={"access_code": make_mo_handler()},
            confirmed=confirmed,
        )

    return run
