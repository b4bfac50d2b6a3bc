"""MO revenue: a paid MO's price split between the operator, the merchant and the platform."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import Table, select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from smsgate.domain.money import Split, split_gross
from smsgate.store.ledger.accounts import (
    PLATFORM_ACCOUNT,
    CurrencyMismatch,
    LedgerConflict,
    LedgerError,
    UnknownMerchant,
    merchant_account,
    merchant_of,
    operator_account,
)
from smsgate.store.ledger.entries import Entry, post_entries
from smsgate.store.models import LedgerEntry, Merchant
from smsgate.store.row_sets import execute, insert_rows, insert_sql, json_value, payload


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


@dataclass(frozen=True, slots=True)
class AlsoInsert:
    """Rows of another table to insert with a booking (:func:`book_mo_revenues`), as
    ``row_sets.insert_rows`` inserts them."""

    table: Table
    rows: Sequence[Mapping[str, Any]]
    columns: Sequence[str]
    conflict: Sequence[str] = ()
    returning: Sequence[str] = ()

    async def insert(self, connection: AsyncConnection) -> list[tuple[Any, ...]]:
        """The rows inserted on their own, in the caller's transaction."""
        return await insert_rows(
            connection,
            self.table,
            self.rows,
            columns=self.columns,
            conflict=self.conflict,
            returning=self.returning,
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
    booked, _ = await book_mo_revenues_and_insert(session, sales, now=now)
    return booked


async def book_mo_revenues_and_insert(
    session: AsyncSession,
    sales: Sequence[MoSale],
    *,
    now: datetime,
    also: AlsoInsert | None = None,
) -> tuple[int, list[tuple[Any, ...]]]:
    """:func:`book_mo_revenues`, and ``also`` inserted in the same transaction (what
    ``insert_rows`` returns for it comes second; values as JSON gives them on PostgreSQL).

    On PostgreSQL, when the entries move one merchant's balance (the usual batch: MOs to
    the services of one merchant), the entries, the balance and ``also`` are one statement:
    each statement is a round trip to the server, which costs more than the work.
    """
    rows = _entry_rows(sales, now)
    connection = await session.connection()
    owners = {
        (owner, row["currency"])
        for row in rows.values()
        if (owner := merchant_of(row["account"])) is not None
    }
    if connection.dialect.name != "sqlite" and rows and len(owners) == 1:
        ((owner, currency),) = owners
        return await _book_in_one(session, rows, owner, currency, also)
    booked = await _book(session, rows)
    if also is None:
        return booked, []
    return booked, await also.insert(connection)


def _entry_rows(
    sales: Sequence[MoSale], now: datetime
) -> dict[tuple[str, str, str], dict[str, Any]]:
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
    return rows


async def _book(session: AsyncSession, rows: dict[tuple[str, str, str], dict[str, Any]]) -> int:
    connection = await session.connection()
    created = {
        (account, kind, ref)
        for account, kind, ref in await insert_rows(
            connection,
            _ENTRIES,
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
            raise await _refusal(session, merchant_id, currency)
    return sum(1 for key in created if key[1] == "mo_revenue")


async def _book_in_one(
    session: AsyncSession,
    rows: dict[tuple[str, str, str], dict[str, Any]],
    owner: int,
    currency: str,
    also: AlsoInsert | None,
) -> tuple[int, list[tuple[Any, ...]]]:
    """:func:`_book` and ``also`` in one statement (PostgreSQL; one merchant's balance)."""
    connection = await session.connection()
    dialect = connection.dialect
    parameters: list[Any] = [
        payload(dialect, _ENTRIES, _ENTRY_COLUMNS, list(rows.values())),
        merchant_account(owner),
        owner,
        currency,
    ]
    if also is not None and also.rows:
        other = insert_sql(
            dialect,
            also.table,
            also.columns,
            conflict=also.conflict,
            returning=also.returning,
            parameter=5,
        )
        parameters.append(payload(dialect, also.table, also.columns, also.rows))
        returned = ", ".join(also.returning)
        sql = (
            f"{_book_sql(dialect)}, other AS ({other}) "  # noqa: S608 (names checked by insert_sql)
            f"SELECT {_BOOKED}, (SELECT coalesce(json_agg(json_build_array({returned})), "
            "'[]'::json) FROM other)"
        )
    else:
        sql = f"{_book_sql(dialect)} SELECT {_BOOKED}, '[]'::json"
    ((added, moved, inserted),) = await execute(connection, sql, parameters)
    created = {(account, kind, ref) for account, kind, ref in json_value(added)}
    if len(created) < len(rows):
        await _check_repeated(session, [row for key, row in rows.items() if key not in created])
    if moved == 0 and any(merchant_of(key[0]) is not None for key in created):
        raise await _refusal(session, owner, currency)
    return (
        sum(1 for key in created if key[1] == "mo_revenue"),
        [tuple(row) for row in json_value(inserted)],
    )


async def _refusal(session: AsyncSession, merchant_id: int, currency: str) -> LedgerError:
    """Why the balance of ``merchant_id`` did not move by entries in ``currency``."""
    kept = await session.scalar(select(Merchant.currency).where(Merchant.id == merchant_id))
    if kept is None:
        return UnknownMerchant(merchant_id)
    return CurrencyMismatch(merchant_id, kept, currency)


_ENTRIES: Final = cast(Table, LedgerEntry.__table__)


@functools.lru_cache(maxsize=4)
def _book_sql(dialect: Dialect) -> str:
    # Every part of a WITH sees the tables as they were before the statement: the balance
    # moves by what the insert returns (the entries it created).
    added = insert_sql(
        dialect,
        _ENTRIES,
        _ENTRY_COLUMNS,
        conflict=("account", "kind", "ref"),
        returning=("account", "kind", "ref", "amount_minor"),
    )
    return (
        f"WITH added AS ({added}), "  # noqa: S608 (constants and the table's column names)
        "moved AS (UPDATE merchants SET balance_minor = balance_minor + m.total "
        "FROM (SELECT sum(amount_minor)::bigint AS total FROM added WHERE account = $2) AS m "
        "WHERE id = $3 AND currency = $4 AND m.total IS NOT NULL RETURNING merchants.id)"
    )


_BOOKED: Final = (
    "(SELECT coalesce(json_agg(json_build_array(account, kind, ref)), '[]'::json) FROM added), "
    "(SELECT count(*) FROM moved)"
)


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
