"""Many MOs in one transaction (``receive_mos``, as a link stores a batch): each distinct MO
gets its code, reply and revenue once, whatever else the batch holds (both databases)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from tests.factories import add_service

from smsgate.domain.access_codes import ALNUM
from smsgate.runtime import Runtime
from smsgate.services.access_codes import make_mo_handler
from smsgate.services.mo import IncomingMo, MoContext, MoOutcome, receive_mos
from smsgate.store import ledger
from smsgate.store.models import AccessCode, MoMessage, MtMessage, Service, ShortNumber

PRICE_SHARE = 120  # the merchant's 50% of 2.40 BGN


def mo(message_id: str, text: str, msisdn: str = "359888123456") -> IncomingMo:
    return IncomingMo("op-bg", message_id, "1851", msisdn, text)


async def send(runtime: Runtime, mos: Sequence[IncomingMo]) -> list[MoOutcome]:
    async with runtime.sessions() as session, session.begin():
        return await receive_mos(
            session, mos, now=runtime.clock.now(), handlers=runtime.mo_handlers
        )


async def count(runtime: Runtime, model: type, *where: object) -> int:
    async with runtime.sessions() as session:
        query = select(func.count()).select_from(model).where(*where)  # type: ignore[arg-type]
        return int(await session.scalar(query) or 0)


async def test_a_batch_with_duplicates_issues_one_code_per_distinct_mo(runtime: Runtime) -> None:
    (before,) = await send(runtime, [mo("m-0", "KOD")])
    outcomes = await send(
        runtime,
        [mo("m-1", "KOD"), mo("m-0", "KOD"), mo("m-2", "kod"), mo("m-1", "KOD")],
    )
    assert [o.duplicate for o in outcomes] == [False, True, False, True]
    assert outcomes[1].mo_id == before.mo_id and outcomes[1].status == "processed"
    assert outcomes[3].mo_id == outcomes[0].mo_id and outcomes[3].status == "processed"
    assert {o.status for o in outcomes} == {"processed"}
    assert await count(runtime, MoMessage) == 3
    assert await count(runtime, AccessCode) == 3
    assert await count(runtime, MtMessage) == 3
    async with runtime.sessions() as session:
        assert await ledger.balance(session, 1) == 3 * PRICE_SHARE
        assert await ledger.balance_mismatches(session) == []


async def test_a_batch_over_several_services_and_merchants(runtime: Runtime) -> None:
    outcomes = await send(
        runtime,
        [
            mo("m-1", "KOD", "359888000001"),
            mo("m-2", "OTHER", "359888000002"),
            mo("m-3", "DAY", "359888000003"),
            mo("m-4", "other", "359888000004"),
        ],
    )
    assert [o.service_id for o in outcomes] == [102, 202, 103, 202]
    assert {o.status for o in outcomes} == {"processed"}
    async with runtime.sessions() as session:
        assert await ledger.balance(session, 1) == 2 * PRICE_SHARE
        assert await ledger.balance(session, 2) == 2 * PRICE_SHARE
        assert await ledger.cached_balance(session, 2) == 2 * PRICE_SHARE
        assert await ledger.balance_mismatches(session) == []
        for outcome in outcomes:
            stored = await session.get_one(MoMessage, outcome.mo_id)
            code = await session.get_one(AccessCode, stored.details["code_id"])
            reply = await session.get_one(MtMessage, stored.details["reply_mt_id"])
            assert code.mo_id == stored.id and code.msisdn == stored.msisdn
            assert code.service_id == outcome.service_id
            assert reply.mo_id == stored.id and reply.msisdn == stored.msisdn
            assert reply.text.startswith(f"Your code: {code.code}, valid until ")
            assert reply.idempotency_key == f"code-reply:{stored.id}"
            assert reply.merchant_id == (2 if outcome.service_id == 202 else 1)


async def test_unrouted_and_disabled_mos_get_the_default_reply(runtime: Runtime) -> None:
    outcomes = await send(
        runtime, [mo("m-1", "hello"), mo("m-2", "KOD"), mo("m-3", "OFF"), mo("m-4", "")]
    )
    assert [o.status for o in outcomes] == ["unrouted", "processed", "rejected", "unrouted"]
    assert [o.service_id for o in outcomes] == [None, 102, 105, None]
    assert await count(runtime, AccessCode) == 1
    async with runtime.sessions() as session:
        replies = {mt.mo_id: mt for mt in (await session.scalars(select(MtMessage))).all()}
        rejected = await session.get_one(MoMessage, outcomes[2].mo_id)
        # A paid MO to a disabled service is still revenue (as one at a time).
        assert await ledger.balance(session, 1) == 2 * PRICE_SHARE
    assert len(replies) == 4
    for outcome in (outcomes[0], outcomes[2], outcomes[3]):
        reply = replies[outcome.mo_id]
        assert reply.text == "Unknown keyword." and reply.merchant_id is None
    assert rejected.details["reason"] == "service disabled"


class Scripted:
    """A random source that draws the codes it is given, symbol by symbol, in order."""

    def __init__(self, *codes: str) -> None:
        self._symbols = list("".join(codes))

    def choice(self, seq: Sequence[str], /) -> str:
        symbol = self._symbols.pop(0)
        assert symbol in seq
        return symbol


async def test_codes_clashing_in_the_batch_or_with_stored_ones_are_drawn_again(
    runtime: Runtime,
) -> None:
    a, b, c, d = (symbol * 8 for symbol in ALNUM[:4])
    runtime.mo_handlers["access_code"] = make_mo_handler(Scripted(a))
    await send(runtime, [mo("m-0", "KOD")])
    # m-1 draws a (stored already), m-2 draws b, m-3 draws b too (taken in this batch);
    # the second round gives m-1 c and m-3 d.
    runtime.mo_handlers["access_code"] = make_mo_handler(Scripted(a, b, b, c, d))
    outcomes = await send(runtime, [mo("m-1", "KOD"), mo("m-2", "KOD"), mo("m-3", "KOD")])
    assert {o.status for o in outcomes} == {"processed"}
    async with runtime.sessions() as session:
        codes = {row.mo_id: row.code for row in (await session.scalars(select(AccessCode))).all()}
    assert [codes[o.mo_id] for o in outcomes] == [c, b, d]


async def test_one_at_a_time_handlers_share_the_batch(runtime: Runtime) -> None:
    seen: list[tuple[int, str, int | None, datetime]] = []

    async def echo(session: object, stored: MoMessage, service: Service, ctx: MoContext) -> None:
        assert ctx.short_number is not None and isinstance(ctx.short_number, ShortNumber)
        seen.append((stored.id, service.keyword, ctx.short_number.id, ctx.now))
        stored.status = "processed"

    async with runtime.sessions() as session, session.begin():
        number = (await session.scalars(select(ShortNumber))).one()
        await add_service(session, 301, type="echo", keyword="ECHO", short_numbers=[number])
    runtime.mo_handlers["echo"] = echo
    outcomes = await send(runtime, [mo("m-1", "echo hi"), mo("m-2", "KOD"), mo("m-3", "ECHO")])
    assert [o.status for o in outcomes] == ["processed"] * 3
    assert [entry[0] for entry in seen] == [outcomes[0].mo_id, outcomes[2].mo_id]
    assert await count(runtime, MoMessage, MoMessage.status == "processed") == 3
