"""Debits: charges (within the merchant's credit) and payouts (within earned money only)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from smsgate.store.ledger.accounts import (
    CurrencyMismatch,
    InsufficientFunds,
    LedgerConflict,
    LedgerError,
    UnknownMerchant,
    merchant_account,
)
from smsgate.store.ledger.balances import cached_balance
from smsgate.store.ledger.entries import Entry, Posting, add_to_balance, find_entry, insert_entry
from smsgate.store.models import LedgerEntry, Merchant


async def charge_merchant(
    session: AsyncSession,
    *,
    merchant_id: int,
    amount_minor: int,
    currency: str,
    kind: str,
    ref: str,
    now: datetime,
    memo: str = "",
    allow_credit: bool = True,
) -> Posting:
    """Take ``amount_minor`` (> 0) from the merchant's balance, once per (kind, ref).

    The balance may go down to ``-credit_minor`` (to 0 with ``allow_credit=False``, as for a
    payout: nobody is paid money they have not earned). One conditional UPDATE decides, so
    concurrent debits serialise on the merchant's row and never overdraw; a refused debit
    raises :class:`InsufficientFunds` and writes nothing.
    """
    if amount_minor <= 0:
        raise ValueError("a charge is a positive amount")
    account = merchant_account(merchant_id)
    existing = await find_entry(session, account, kind, ref)
    if existing is not None:
        return await _repeated(session, existing, merchant_id, -amount_minor, currency)

    debited = await _debit(
        session, merchant_id, amount_minor, currency, allow_credit=allow_credit, sync="fetch"
    )
    if debited is None:
        # A concurrent booking of the same ref may have committed meanwhile.
        existing = await find_entry(session, account, kind, ref)
        if existing is not None:
            return await _repeated(session, existing, merchant_id, -amount_minor, currency)
        raise await _refusal(session, merchant_id, amount_minor, currency, allow_credit)

    entry = Entry(account, kind, -amount_minor, currency, ref, merchant_id, memo)
    entry_id = await insert_entry(session, entry, merchant_id, now)
    if entry_id is None:
        # Lost a race with a concurrent booking of the same ref: give the money back.
        await add_to_balance(session, merchant_id, amount_minor)
        existing = await find_entry(session, account, kind, ref)
        assert existing is not None
        return await _repeated(session, existing, merchant_id, -amount_minor, currency)
    return Posting(entry_id, -amount_minor, debited, created=True)


@dataclass(frozen=True, slots=True)
class Charge:
    """One debit of a batch: what for (``ref``), how much (> 0), and a memo."""

    ref: str
    amount_minor: int
    memo: str = ""


async def charge_merchant_many(
    session: AsyncSession,
    *,
    merchant_id: int,
    charges: Sequence[Charge],
    currency: str,
    kind: str,
    now: datetime,
    allow_credit: bool = True,
) -> int:
    """Take every charge, all or none, as :func:`charge_merchant` takes one; returns the
    balance after them.

    One conditional UPDATE moves the balance by the total (never below ``-credit``), then
    the entries are inserted in one statement. For new refs only (the messages of a batch
    just written): a ref booked before fails the insert, and with it the transaction.
    """
    if not charges:
        return await cached_balance(session, merchant_id)
    if any(charge.amount_minor <= 0 for charge in charges):
        raise ValueError("a charge is a positive amount")
    total = sum(charge.amount_minor for charge in charges)
    debited = await _debit(
        session, merchant_id, total, currency, allow_credit=allow_credit, sync=False
    )
    if debited is None:
        raise await _refusal(session, merchant_id, total, currency, allow_credit)
    account = merchant_account(merchant_id)
    connection = await session.connection()
    await connection.execute(
        insert(cast(Table, LedgerEntry.__table__)),
        [
            {
                "account": account,
                "merchant_id": merchant_id,
                "kind": kind,
                "amount_minor": -charge.amount_minor,
                "currency": currency,
                "ref": charge.ref,
                "memo": charge.memo[:255],
                "created_at": now,
            }
            for charge in charges
        ],
    )
    return int(debited)


async def _repeated(
    session: AsyncSession, existing: LedgerEntry, merchant_id: int, amount: int, currency: str
) -> Posting:
    if (existing.amount_minor, existing.currency) != (amount, currency):
        raise LedgerConflict(existing.account, existing.kind, existing.ref)
    return Posting(existing.id, amount, await cached_balance(session, merchant_id), created=False)


async def _refusal(
    session: AsyncSession, merchant_id: int, amount_minor: int, currency: str, allow_credit: bool
) -> LedgerError:
    row = (
        await session.execute(
            select(Merchant.currency, Merchant.balance_minor, Merchant.credit_minor).where(
                Merchant.id == merchant_id
            )
        )
    ).one_or_none()
    if row is None:
        return UnknownMerchant(merchant_id)
    if row.currency != currency:
        return CurrencyMismatch(merchant_id, row.currency, currency)
    limit = row.credit_minor if allow_credit else 0
    return InsufficientFunds(merchant_id, amount_minor, row.balance_minor, limit)


async def book_payout(
    session: AsyncSession,
    *,
    merchant_id: int,
    amount_minor: int,
    currency: str,
    ref: str,
    now: datetime,
    memo: str = "",
) -> Posting:
    """Pay a merchant out of earned money (never out of credit); ``ref`` makes it once-only."""
    return await charge_merchant(
        session,
        merchant_id=merchant_id,
        amount_minor=amount_minor,
        currency=currency,
        kind="payout",
        ref=ref,
        now=now,
        memo=memo,
        allow_credit=False,
    )


async def _debit(
    session: AsyncSession,
    merchant_id: int,
    amount_minor: int,
    currency: str,
    *,
    allow_credit: bool,
    sync: str | bool,
) -> int | None:
    """The one conditional UPDATE that decides a debit: the new balance, or None when it would
    go below ``-credit_minor`` (0 without credit) or the currency differs."""
    floor = -Merchant.credit_minor if allow_credit else literal(0)
    debited: int | None = (
        await session.execute(
            update(Merchant)
            .where(
                Merchant.id == merchant_id,
                Merchant.currency == currency,
                Merchant.balance_minor - amount_minor >= floor,
            )
            .values(balance_minor=Merchant.balance_minor - amount_minor)
            .returning(Merchant.balance_minor)
            .execution_options(synchronize_session=sync)
        )
    ).scalar_one_or_none()
    return debited
