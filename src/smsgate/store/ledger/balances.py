"""Balances: the sum of an account's entries, the cached merchant balance, and the proof
that the two agree."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from smsgate.store.ledger.accounts import UnknownMerchant, merchant_account
from smsgate.store.models import LedgerEntry, Merchant


async def balance(session: AsyncSession, merchant_id: int) -> int:
    """The merchant's balance as the sum of its ledger entries."""
    return await account_balance(session, merchant_account(merchant_id))


async def account_balance(session: AsyncSession, account: str) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount_minor), 0)).where(
            LedgerEntry.account == account
        )
    )
    return int(total or 0)


async def cached_balance(session: AsyncSession, merchant_id: int) -> int:
    """``merchants.balance_minor``: what debits are checked against."""
    value = await session.scalar(select(Merchant.balance_minor).where(Merchant.id == merchant_id))
    if value is None:
        raise UnknownMerchant(merchant_id)
    return value


@dataclass(frozen=True, slots=True)
class BalanceMismatch:
    merchant_id: int
    cached_minor: int
    ledger_minor: int


async def balance_mismatches(
    session: AsyncSession, merchant_ids: Sequence[int] | None = None
) -> list[BalanceMismatch]:
    """Merchants whose cached balance differs from the sum of their entries (should be none)."""
    sums = (
        select(LedgerEntry.merchant_id, func.sum(LedgerEntry.amount_minor).label("total"))
        .where(LedgerEntry.account.like("merchant:%"))
        .group_by(LedgerEntry.merchant_id)
        .subquery()
    )
    ledger_total = func.coalesce(sums.c.total, 0)
    query = (
        select(Merchant.id, Merchant.balance_minor, ledger_total)
        .outerjoin(sums, sums.c.merchant_id == Merchant.id)
        .where(Merchant.balance_minor != ledger_total)
        .order_by(Merchant.id)
    )
    if merchant_ids is not None:
        query = query.where(Merchant.id.in_(merchant_ids))
    rows = (await session.execute(query)).all()
    return [BalanceMismatch(r[0], r[1], int(r[2])) for r in rows]


async def list_entries(
    session: AsyncSession, *, account: str, limit: int = 100, before_id: int | None = None
) -> list[LedgerEntry]:
    """An account's entries, newest first; page with ``before_id``."""
    query = (
        select(LedgerEntry)
        .where(LedgerEntry.account == account)
        .order_by(LedgerEntry.id.desc())
        .limit(limit)
    )
    if before_id is not None:
        query = query.where(LedgerEntry.id < before_id)
    return list((await session.scalars(query)).all())
