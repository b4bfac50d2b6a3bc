"""MO revenue: a paid MO's price split between the operator, the merchant and the platform."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from smsgate.domain.money import Split, split_gross
from smsgate.store.ledger.accounts import (
    PLATFORM_ACCOUNT,
    CurrencyMismatch,
    LedgerConflict,
    UnknownMerchant,
    merchant_account,
    merchant_of,
    operator_account,
)
from smsgate.store.ledger.entries import Entry, post_entries
from smsgate.store.models import LedgerEntry, Merchant
from smsgate.store.row_sets import execute, insert_rows


@dataclass(frozen=True, slots=True)
class MoRevenue:
    split: Split
    created: bool


async def book_mo_revenue(
    session: AsyncSession,
    *,
    mo_id: int,
    merchant_id: int,
    gross_minor: int,
    currency: str,
    operator_id: str,
    operator_share_bp: int,
    merchant_share_bp: int,
    now: datetime,
) -> MoRevenue:
    """Split a paid MO's price into three entries (ref ``mo:<id>``), once per MO.

    The operator's and the merchant's shares are rounded down; the platform gets the rest
    (domain/money.split_gross), so the three entries always sum to the gross.
    """
    split = split_gross(gross_minor, operator_share_bp, merchant_share_bp)
    ref = f"mo:{mo_id}"
    posted = await post_entries(
        session,
        [
            Entry(
                operator_account(operator_id),
                "operator_share",
                split.operator,
                currency,
                ref,
                merchant_id,
            ),
            Entry(
                merchant_account(merchant_id),
                "mo_revenue",
                split.merchant,
                currency,
                ref,
                merchant_id,
            ),
            Entry(PLATFORM_ACCOUNT, "platform_share", split.platform, currency, ref, merchant_id),
        ],
        now=now,
    )
    return MoRevenue(split, created=posted[1].created)


@dataclass(frozen=True, slots=True)
class MoSale:
    """A paid MO to book: which MO, whose service it reached, its price and the shares."""

    mo_id: int
    merchant_id: int
    gross_minor: int
    currency: str
    operator_id: str
    operator_share_bp: int
    merchant_share_bp: int


_ENTRY_COLUMNS: Final = (
    "account",
    "merchant_id",
    "kind",
    "amount_minor",
    "currency",
    "ref",
    "memo",
    "created_at",
)


async def book_mo_revenues(session: AsyncSession, sales: Sequence[MoSale], *, now: datetime) -> int:
    """:func:`book_mo_revenue` for many MOs at once: every entry in one statement, then one
    balance update per merchant (in merchant id order, so that two transactions booking for
    the same merchants on PostgreSQL lock them in the same order). Returns how many MOs were
    booked now (the others were booked before).

    The same guarantees as booking one by one: an entry exists once per (account, kind,
    ref); a merchant's entries are in its currency (:class:`CurrencyMismatch`); an entry
    booked before with another amount raises :class:`LedgerConflict`. After an exception the
    caller's transaction holds partial work and must be rolled back.
    """
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for sale in sales:
        split = split_gross(sale.gross_minor, sale.operator_share_bp, sale.merchant_share_bp)
        ref = f"mo:{sale.mo_id}"
        for account, kind, amount in (
            (operator_account(sale.operator_id), "operator_share", split.operator),
            (merchant_account(sale.merchant_id), "mo_revenue", split.merchant),
            (PLATFORM_ACCOUNT, "platform_share", split.platform),
        ):
            row: dict[str, Any] = {
                "account": account,
                "merchant_id": sale.merchant_id,
                "kind": kind,
                "amount_minor": amount,
                "currency": sale.currency,
                "ref": ref,
                "memo": "",
                "created_at": now,
            }
            earlier = rows.setdefault((account, kind, ref), row)
            if (earlier["amount_minor"], earlier["currency"]) != (amount, sale.currency):
                raise LedgerConflict(account, kind, ref)
    connection = await session.connection()
    created = {
        (account, kind, ref)
        for account, kind, ref in await insert_rows(
            connection,
            cast(Table, LedgerEntry.__table__),
            list(rows.values()),
            columns=_ENTRY_COLUMNS,
            conflict=("account", "kind", "ref"),
            returning=("account", "kind", "ref"),
        )
    }
    if len(created) < len(rows):
        await _check_repeated(session, [row for key, row in rows.items() if key not in created])
    moved: dict[int, tuple[str, int]] = {}
    for key, row in rows.items():
        owner = merchant_of(row["account"])
        if owner is not None and key in created:
            currency, total = moved.get(owner, (row["currency"], 0))
            if currency != row["currency"]:
                raise CurrencyMismatch(owner, currency, row["currency"])
            moved[owner] = (currency, total + row["amount_minor"])
    sql = _MOVE_SQLITE if connection.dialect.name == "sqlite" else _MOVE_POSTGRESQL
    for merchant_id in sorted(moved):
        currency, amount = moved[merchant_id]
        if not await execute(connection, sql, (amount, merchant_id, currency)):
            kept = await session.scalar(select(Merchant.currency).where(Merchant.id == merchant_id))
            if kept is None:
                raise UnknownMerchant(merchant_id)
            raise CurrencyMismatch(merchant_id, kept, currency)
    return sum(1 for key in created if key[1] == "mo_revenue")


_MOVE: Final = (
    "UPDATE merchants SET balance_minor = balance_minor + {} WHERE id = {} AND currency = {} "
    "RETURNING id"
)
_MOVE_SQLITE: Final = _MOVE.format("?", "?", "?")
_MOVE_POSTGRESQL: Final = _MOVE.format("$1", "$2", "$3")


async def _check_repeated(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Entries found booked already must have been booked with the same amount."""
    found = await session.execute(
        select(
            LedgerEntry.account,
            LedgerEntry.kind,
            LedgerEntry.ref,
            LedgerEntry.amount_minor,
            LedgerEntry.currency,
        ).where(LedgerEntry.ref.in_({row["ref"] for row in rows}))
    )
    booked = {(r.account, r.kind, r.ref): (r.amount_minor, r.currency) for r in found}
    for row in rows:
        if booked.get((row["account"], row["kind"], row["ref"])) != (
            row["amount_minor"],
            row["currency"],
        ):
            raise LedgerConflict(row["account"], row["kind"], row["ref"])
