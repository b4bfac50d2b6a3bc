"""The ledger on SQLite and PostgreSQL: idempotent entries, atomic debits, balances."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from smsgate.store import ledger
from smsgate.store.ledger import (
    CurrencyMismatch,
    Entry,
    InsufficientFunds,
    LedgerConflict,
    UnknownMerchant,
)
from smsgate.store.models import LedgerEntry, Merchant, Operator

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

Sessions = async_sessionmaker[AsyncSession]


async def add_merchant(
    sessions: Sessions, merchant_id: int = 1, *, credit: int = 0, currency: str = "BGN"
) -> None:
    async with sessions() as session, session.begin():
        session.add(
            Merchant(
                id=merchant_id,
                login=f"m{merchant_id}",
                password_hash="x",
                currency=currency,
                credit_minor=credit,
                balance_minor=0,
                created_at=NOW,
                updated_at=NOW,
            )
        )
        if await session.get(Operator, "op") is None:
            session.add(
                Operator(id="op", country="BG", kind="smpp", created_at=NOW, updated_at=NOW)
            )


async def fund(sessions: Sessions, amount: int, merchant_id: int = 1, ref: str = "seed") -> None:
    async with sessions() as session, session.begin():
        await ledger.credit_merchant(
            session,
            merchant_id=merchant_id,
            amount_minor=amount,
            currency="BGN",
            kind="adjustment",
            ref=ref,
            now=NOW,
        )


async def entries(sessions: Sessions) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(LedgerEntry)) or 0)


async def state(sessions: Sessions, merchant_id: int = 1) -> tuple[int, int]:
    """(cached balance, sum of entries) of a merchant."""
    async with sessions() as session:
        return (
            await ledger.cached_balance(session, merchant_id),
            await ledger.balance(session, merchant_id),
        )


async def test_mo_revenue_is_split_three_ways_once(sessionmaker: Sessions) -> None:
    await add_merchant(sessionmaker)
    for _ in range(2):  # a redelivered MO books nothing more
        async with sessionmaker() as session, session.begin():
            booked = await ledger.book_mo_revenue(
                session,
                mo_id=17,
                merchant_id=1,
                gross_minor=240,
                currency="BGN",
                operator_id="op",
                operator_share_bp=4500,
                merchant_share_bp=5000,
                now=NOW,
            )
    assert booked.split == ledger.Split(operator=108, merchant=120, platform=12)
    assert not booked.created
    async with sessionmaker() as session:
        rows = (await session.scalars(select(LedgerEntry).order_by(LedgerEntry.id))).all()
        assert [(r.account, r.kind, r.amount_minor, r.ref) for r in rows] == [
            ("operator:op", "operator_share", 108, "mo:17"),
            ("merchant:1", "mo_revenue", 120, "mo:17"),
            ("platform", "platform_share", 12, "mo:17"),
        ]
        assert sum(r.amount_minor for r in rows) == 240
        assert {r.merchant_id for r in rows} == {1}
        assert await ledger.account_balance(session, ledger.PLATFORM_ACCOUNT) == 12
    assert await state(sessionmaker) == (120, 120)


async def test_charge_within_credit_and_refusal_leaves_no_trace(sessionmaker: Sessions) -> None:
    await add_merchant(sessionmaker, credit=500)
    await fund(sessionmaker, 100)
    async with sessionmaker() as session, session.begin():
        posting = await ledger.charge_merchant(
            session,
            merchant_id=1,
            amount_minor=550,
            currency="BGN",
            kind="mt_cost",
            ref="mt:1",
            now=NOW,
            memo="2 parts",
        )
        assert (posting.amount_minor, posting.balance_minor, posting.created) == (-550, -450, True)
        with pytest.raises(InsufficientFunds) as refused:
            await ledger.charge_merchant(
                session,
                merchant_id=1,
                amount_minor=51,
                currency="BGN",
                kind="mt_cost",
                ref="mt:2",
                now=NOW,
            )
        assert (refused.value.balance_minor, refused.value.limit_minor) == (-450, 500)
        # The transaction is still usable and the refusal wrote nothing: 50 more fit exactly.
        last = await ledger.charge_merchant(
            session,
            merchant_id=1,
            amount_minor=50,
            currency="BGN",
            kind="mt_cost",
            ref="mt:2",
            now=NOW,
        )
        assert last.balance_minor == -500
    assert await state(sessionmaker) == (-500, -500)
    assert await entries(sessionmaker) == 3


async def test_repeated_charge_books_once(sessionmaker: Sessions) -> None:
    await add_merchant(sessionmaker)
    await fund(sessionmaker, 100)
    results = []
    for _ in range(3):
        async with sessionmaker() as session, session.begin():
            results.append(
                await ledger.charge_merchant(
                    session,
                    merchant_id=1,
                    amount_minor=30,
                    currency="BGN",
                    kind="mt_cost",
                    ref="mt:9",
                    now=NOW,
                )
            )
    assert [r.created for r in results] == [True, False, False]
    assert len({r.entry_id for r in results}) == 1
    assert await state(sessionmaker) == (70, 70)
    # Even when the balance could no longer pay for it, a repeat is the first booking.
    async with sessionmaker() as session, session.begin():
        await ledger.charge_merchant(
            session,
            merchant_id=1,
            amount_minor=70,
            currency="BGN",
            kind="mt_cost",
            ref="mt:10",
            now=NOW,
        )
        again = await ledger.charge_merchant(
            session,
            merchant_id=1,
            amount_minor=30,
            currency="BGN",
            kind="mt_cost",
            ref="mt:9",
            now=NOW,
        )
        assert not again.created
        with pytest.raises(LedgerConflict):
            await ledger.charge_merchant(
                session,
                merchant_id=1,
                amount_minor=31,
                currency="BGN",
                kind="mt_cost",
                ref="mt:9",
                now=NOW,
            )
    assert await state(sessionmaker) == (0, 0)


async def test_payout_never_uses_credit(sessionmaker: Sessions) -> None:
    await add_merchant(sessionmaker, credit=10_000)
    await fund(sessionmaker, 300)
    async with sessionmaker() as session, session.begin():
        with pytest.raises(InsufficientFunds):
            await ledger.book_payout(
                session, merchant_id=1, amount_minor=301, currency="BGN", ref="payout:a", now=NOW
            )
        paid = await ledger.book_payout(
            session, merchant_id=1, amount_minor=300, currency="BGN", ref="payout:a", now=NOW
        )
    assert paid.balance_minor == 0
    async with sessionmaker() as session:
        entry = await session.get(LedgerEntry, paid.entry_id)
        assert entry is not None
        assert (entry.kind, entry.amount_minor, entry.ref) == ("payout", -300, "payout:a")


async def test_wrong_currency_and_unknown_merchant(sessionmaker: Sessions) -> None:
    await add_merchant(sessionmaker, credit=1000)
    async with sessionmaker() as session, session.begin():
        with pytest.raises(CurrencyMismatch):
            await ledger.charge_merchant(
                session, merchant_id=1, amount_minor=1, currency="EUR", kind="k", ref="r", now=NOW
            )
        with pytest.raises(UnknownMerchant):
            await ledger.charge_merchant(
                session, merchant_id=2, amount_minor=1, currency="BGN", kind="k", ref="r", now=NOW
            )
        with pytest.raises(CurrencyMismatch):
            await ledger.credit_merchant(
                session, merchant_id=1, amount_minor=1, currency="EUR", kind="k", ref="r", now=NOW
            )
        with pytest.raises(UnknownMerchant):
            await ledger.credit_merchant(
                session, merchant_id=2, amount_minor=1, currency="BGN", kind="k", ref="r", now=NOW
            )
        for bad in (0, -5):
            with pytest.raises(ValueError, match="positive"):
                await ledger.charge_merchant(
                    session,
                    merchant_id=1,
                    amount_minor=bad,
                    currency="BGN",
                    kind="k",
                    ref="r",
                    now=NOW,
                )
    assert await entries(sessionmaker) == 0


async def test_post_entries_is_idempotent_and_checks_before_writing(sessionmaker: Sessions) -> None:
    await add_merchant(sessionmaker)
    batch = [
        Entry("merchant:1", "adjustment", 500, "BGN", "fix:1", memo="goodwill"),
        Entry("platform", "adjustment", -500, "BGN", "fix:1", merchant_id=1),
    ]
    async with sessionmaker() as session, session.begin():
        first = await ledger.post_entries(session, batch, now=NOW)
        second = await ledger.post_entries(session, batch, now=NOW)
    assert [p.created for p in first] == [True, True]
    assert [p.created for p in second] == [False, False]
    assert [p.entry_id for p in first] == [p.entry_id for p in second]
    assert await state(sessionmaker) == (500, 500)
    async with sessionmaker() as session, session.begin():
        with pytest.raises(CurrencyMismatch):
            await ledger.post_entries(
                session,
                [
                    Entry("platform", "adjustment", 1, "BGN", "fix:2"),
                    Entry("merchant:1", "adjustment", 1, "EUR", "fix:2"),
                ],
                now=NOW,
            )
        assert await ledger.account_balance(session, "platform") == -500  # nothing written
        with pytest.raises(LedgerConflict):
            await ledger.post_entries(
                session, [Entry("merchant:1", "adjustment", 501, "BGN", "fix:1")], now=NOW
            )


async def test_balance_mismatches_finds_a_tampered_cache(sessionmaker: Sessions) -> None:
    await add_merchant(sessionmaker, 1)
    await add_merchant(sessionmaker, 2)
    await fund(sessionmaker, 100, merchant_id=1)
    async with sessionmaker() as session, session.begin():
        assert await ledger.balance_mismatches(session) == []
        await session.execute(update(Merchant).where(Merchant.id == 2).values(balance_minor=7))
    async with sessionmaker() as session:
        assert await ledger.balance_mismatches(session) == [ledger.BalanceMismatch(2, 7, 0)]
        assert await ledger.balance_mismatches(session, [1]) == []


async def test_list_entries_pages_newest_first(sessionmaker: Sessions) -> None:
    await add_merchant(sessionmaker)
    for i in range(5):
        await fund(sessionmaker, 10 + i, ref=f"r{i}")
    async with sessionmaker() as session:
        page = await ledger.list_entries(session, account="merchant:1", limit=3)
        assert [e.ref for e in page] == ["r4", "r3", "r2"]
        rest = await ledger.list_entries(
            session, account="merchant:1", limit=3, before_id=page[-1].id
        )
        assert [e.ref for e in rest] == ["r1", "r0"]
