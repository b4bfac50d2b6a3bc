"""Ledger entries: the accounts, the errors, and booking entries once each (``post_entries``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from smsgate.store.ledger.accounts import (
    CurrencyMismatch,
    LedgerConflict,
    UnknownMerchant,
    merchant_account,
    merchant_of,
)
from smsgate.store.ledger.balances import cached_balance
from smsgate.store.models import LedgerEntry, Merchant


@dataclass(frozen=True, slots=True)
class Entry:
    """A movement to book. ``merchant_id`` ties operator/platform entries to a merchant's
    traffic for the trace; on a ``merchant:<id>`` account it is that id."""

    account: str
    kind: str
    amount_minor: int
    currency: str
    ref: str
    merchant_id: int | None = None
    memo: str = ""


@dataclass(frozen=True, slots=True)
class Posted:
    """The result of booking one entry: its id, and whether this call created it."""

    entry_id: int
    created: bool


@dataclass(frozen=True, slots=True)
class Posting:
    """The result of a merchant debit or credit."""

    entry_id: int
    amount_minor: int  # signed, as booked
    balance_minor: int  # the merchant's balance after it (now, for a repeated booking)
    created: bool


def _insert_ignoring_duplicates(session: AsyncSession, values: dict[str, Any]) -> Any:
    # INSERT ... ON CONFLICT DO NOTHING RETURNING id: same SQL on PostgreSQL and SQLite
    # (>= 3.35 for RETURNING); a concurrent insert of the same key waits for the first
    # transaction and then does nothing.
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert(LedgerEntry)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["account", "kind", "ref"])
        .returning(LedgerEntry.id)
    )


async def find_entry(
    session: AsyncSession, account: str, kind: str, ref: str
) -> LedgerEntry | None:
    return await session.scalar(
        select(LedgerEntry).where(
            LedgerEntry.account == account, LedgerEntry.kind == kind, LedgerEntry.ref == ref
        )
    )


async def _merchant_currency(session: AsyncSession, merchant_id: int) -> str:
    currency = await session.scalar(select(Merchant.currency).where(Merchant.id == merchant_id))
    if currency is None:
        raise UnknownMerchant(merchant_id)
    return currency


async def insert_entry(
    session: AsyncSession, entry: Entry, merchant_id: int | None, now: datetime
) -> int | None:
    statement = _insert_ignoring_duplicates(
        session,
        {
            "account": entry.account,
            "merchant_id": merchant_id,
            "kind": entry.kind,
            "amount_minor": entry.amount_minor,
            "currency": entry.currency,
            "ref": entry.ref,
            "memo": entry.memo[:255],
            "created_at": now,
        },
    )
    entry_id: int | None = (await session.execute(statement)).scalar_one_or_none()
    return entry_id


async def add_to_balance(session: AsyncSession, merchant_id: int, amount_minor: int) -> int:
    balance: int = (
        await session.execute(
            update(Merchant)
            .where(Merchant.id == merchant_id)
            .values(balance_minor=Merchant.balance_minor + amount_minor)
            .returning(Merchant.balance_minor)
            .execution_options(synchronize_session="fetch")
        )
    ).scalar_one()
    return balance


async def post_entries(
    session: AsyncSession, entries: Iterable[Entry], *, now: datetime
) -> list[Posted]:
    """Book entries in the caller's transaction, each at most once; no funds check.

    A ``merchant:<id>`` entry also moves that merchant's cached balance. Every entry is
    checked before anything is written, so a refused batch leaves no trace.
    """
    batch = list(entries)
    for entry in batch:
        owner = merchant_of(entry.account)
        if owner is not None:
            currency = await _merchant_currency(session, owner)
            if currency != entry.currency:
                raise CurrencyMismatch(owner, currency, entry.currency)
    posted: list[Posted] = []
    for entry in batch:
        owner = merchant_of(entry.account)
        entry_id = await insert_entry(
            session, entry, entry.merchant_id if owner is None else owner, now
        )
        if entry_id is None:
            existing = await find_entry(session, entry.account, entry.kind, entry.ref)
            assert existing is not None
            if (existing.amount_minor, existing.currency) != (entry.amount_minor, entry.currency):
                raise LedgerConflict(entry.account, entry.kind, entry.ref)
            posted.append(Posted(existing.id, created=False))
            continue
        if owner is not None:
            await add_to_balance(session, owner, entry.amount_minor)
        posted.append(Posted(entry_id, created=True))
    return posted


async def credit_merchant(
    session: AsyncSession,
    *,
    merchant_id: int,
    amount_minor: int,
    currency: str,
    kind: str,
    ref: str,
    now: datetime,
    memo: str = "",
) -> Posting:
    """Add ``amount_minor`` (> 0) to the merchant's balance, once per (kind, ref)."""
    if amount_minor <= 0:
        raise ValueError("a credit is a positive amount")
    entry = Entry(
        merchant_account(merchant_id), kind, amount_minor, currency, ref, merchant_id, memo
    )
    (posted,) = await post_entries(session, [entry], now=now)
    return Posting(
        posted.entry_id, amount_minor, await cached_balance(session, merchant_id), posted.created
    )
