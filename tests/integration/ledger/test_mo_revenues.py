"""MO revenue booked for a batch (``book_mo_revenues``) on SQLite and PostgreSQL: on
PostgreSQL the entries and one merchant's balance are one statement with the rows carried
along, with the guarantees of booking one by one."""

from __future__ import annotations

from typing import Any, cast

import pytest
from sqlalchemy import Table, func, select
from tests.integration.ledger.test_ledger import NOW, Sessions, add_merchant

from smsgate.store import ledger
from smsgate.store.ledger import AlsoInsert, CurrencyMismatch, LedgerConflict, MoSale
from smsgate.store.models import LedgerEntry, Merchant


def _sale(mo_id: int, merchant_id: int = 1, gross: int = 240, currency: str = "BGN") -> MoSale:
    return MoSale(mo_id, merchant_id, gross, currency, "op", 5000, 2500)


async def _entries(sessions: Sessions) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(LedgerEntry)) or 0)


async def test_a_batch_is_booked_once(sessionmaker: Sessions) -> None:
    await add_merchant(sessionmaker)
    async with sessionmaker() as session, session.begin():
        booked = await ledger.book_mo_revenues(session, [_sale(1), _sale(2)], now=NOW)
    assert booked == 2
    async with sessionmaker() as session, session.begin():
        again = await ledger.book_mo_revenues(session, [_sale(2), _sale(3)], now=NOW)
    assert again == 1
    async with sessionmaker() as session:
        assert await ledger.cached_balance(session, 1) == 3 * 60
        assert await ledger.balance_mismatches(session) == []
    assert await _entries(sessionmaker) == 9


async def test_a_repeated_booking_with_another_amount_is_refused(sessionmaker: Sessions) -> None:
    await add_merchant(sessionmaker)
    async with sessionmaker() as session, session.begin():
        await ledger.book_mo_revenues(session, [_sale(1)], now=NOW)
    async with sessionmaker() as session:
        with pytest.raises(LedgerConflict):
            async with session.begin():
                await ledger.book_mo_revenues(session, [_sale(1, gross=480)], now=NOW)
    async with sessionmaker() as session:
        assert await ledger.cached_balance(session, 1) == 60
    assert await _entries(sessionmaker) == 3


async def test_entries_in_another_currency_are_refused(sessionmaker: Sessions) -> None:
    await add_merchant(sessionmaker)
    async with sessionmaker() as session:
        with pytest.raises(CurrencyMismatch):
            async with session.begin():
                await ledger.book_mo_revenues(session, [_sale(1, currency="EUR")], now=NOW)
        with pytest.raises(CurrencyMismatch):
            async with session.begin():
                await ledger.book_mo_revenues(
                    session, [_sale(1), _sale(2, currency="EUR")], now=NOW
                )
    assert await _entries(sessionmaker) == 0


async def test_several_merchants_and_rows_carried_along(sessionmaker: Sessions) -> None:
    await add_merchant(sessionmaker)
    await add_merchant(sessionmaker, 2)
    merchants = cast(Table, Merchant.__table__)
    also = AlsoInsert(
        merchants,
        [_merchant_row(3), _merchant_row(4)],
        columns=tuple(_merchant_row(3)),
        conflict=("id",),
        returning=("id", "login"),
    )
    async with sessionmaker() as session, session.begin():
        booked, inserted = await ledger.book_mo_revenues_and_insert(
            session, [_sale(1), _sale(2, merchant_id=2)], now=NOW, also=also
        )
    assert booked == 2
    assert sorted(inserted) == [(3, "m3"), (4, "m4")]
    async with sessionmaker() as session, session.begin():
        booked, inserted = await ledger.book_mo_revenues_and_insert(
            session, [_sale(3)], now=NOW, also=also
        )
    assert (booked, inserted) == (1, [])
    async with sessionmaker() as session:
        assert await ledger.cached_balance(session, 1) == 120
        assert await ledger.cached_balance(session, 2) == 60
        assert await ledger.balance_mismatches(session) == []


def _merchant_row(merchant_id: int) -> dict[str, Any]:
    return {
        "id": merchant_id,
        "login": f"m{merchant_id}",
        "password_hash": "x",
        "currency": "BGN",
        "credit_minor": 0,
        "balance_minor": 0,
        "timezone": "UTC",
        "status": "active",
        "created_at": NOW,
        "updated_at": NOW,
    }
