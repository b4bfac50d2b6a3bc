"""The ledger: every movement of money is an entry; a balance is the sum of its entries.

Accounts are ``merchant:<id>``, ``operator:<id>`` and ``platform``. Amounts are integer minor
units; positive is what the account is owed (a merchant's share of an MO), negative what it
paid or was charged (an MT's cost, a payout).

``merchants.balance_minor`` caches the sum of a merchant's entries. It changes only here, in
the same transaction as the entry, so that a debit can be checked against it by one atomic
statement (:func:`charge_merchant`) instead of a read-then-write that two transactions could
interleave. :func:`balance_mismatches` proves the cache equals the sum.

Every entry is idempotent by ``(account, kind, ref)``: booking the same movement again (a
retried job, a redelivered MO) returns the first booking and moves no money.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import Table, func, insert, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from smsgate.domain.money import Split, split_gross
from smsgate.store.models import LedgerEntry, Merchant

# Every exception this module raises.
#   LedgerError
#   ├── UnknownMerchant
#   ├── CurrencyMismatch: the entry's currency is not the merchant's
#   ├── InsufficientFunds: a debit would take the balance below -credit
#   └── LedgerConflict: (account, kind, ref) was already booked with another amount


class LedgerError(Exception):
    pass


class UnknownMerchant(LedgerError):
    def __init__(self, merchant_id: int) -> None:
        super().__init__(f"no merchant {merchant_id}")
        self.merchant_id = merchant_id


class CurrencyMismatch(LedgerError):
    def __init__(self, merchant_id: int, expected: str, given: str) -> None:
        super().__init__(f"merchant {merchant_id} keeps {expected}, not {given}")
        self.merchant_id = merchant_id
        self.expected = expected
        self.given = given


class InsufficientFunds(LedgerError):
    def __init__(self, merchant_id: int, amount_minor: int, balance_minor: int, limit_minor: int):
        super().__init__(
            f"merchant {merchant_id}: debit of {amount_minor} exceeds the balance "
            f"{balance_minor} (may go down to {-limit_minor})"
        )
        self.merchant_id = merchant_id
        self.amount_minor = amount_minor
        self.balance_minor = balance_minor
        self.limit_minor = limit_minor


class LedgerConflict(LedgerError):
    def __init__(self, account: str, kind: str, ref: str) -> None:
        super().__init__(f"{account} {kind} {ref} was already booked with another amount")
        self.account = account
        self.kind = kind
        self.ref = ref


PLATFORM_ACCOUNT: Final = "platform"


def merchant_account(merchant_id: int) -> str:
    return f"merchant:{merchant_id}"


def operator_account(operator_id: str) -> str:
    return f"operator:{operator_id}"


def _merchant_of(account: str) -> int | None:
    prefix, _, rest = account.partition(":")
    return int(rest) if prefix == "merchant" else None


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


@dataclass(frozen=True, slots=True)
class MoRevenue:
    split: Split
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


async def _find(session: AsyncSession, account: str, kind: str, ref: str) -> LedgerEntry | None:
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


async def _insert(
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


async def _add_to_balance(session: AsyncSession, merchant_id: int, amount_minor: int) -> int:
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
        owner = _merchant_of(entry.account)
        if owner is not None:
            currency = await _merchant_currency(session, owner)
            if currency != entry.currency:
                raise CurrencyMismatch(owner, currency, entry.currency)
    posted: list[Posted] = []
    for entry in batch:
        owner = _merchant_of(entry.account)
        entry_id = await _insert(session, entry, entry.merchant_id if owner is None else owner, now)
        if entry_id is None:
            existing = await _find(session, entry.account, entry.kind, entry.ref)
            assert existing is not None
            if (existing.amount_minor, existing.currency) != (entry.amount_minor, entry.currency):
                raise LedgerConflict(entry.account, entry.kind, entry.ref)
            posted.append(Posted(existing.id, created=False))
            continue
        if owner is not None:
            await _add_to_balance(session, owner, entry.amount_minor)
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
    existing = await _find(session, account, kind, ref)
    if existing is not None:
        return await _repeated(session, existing, merchant_id, -amount_minor, currency)

    floor = -Merchant.credit_minor if allow_credit else literal(0)
    debited = (
        await session.execute(
            update(Merchant)
            .where(
                Merchant.id == merchant_id,
                Merchant.currency == currency,
                Merchant.balance_minor - amount_minor >= floor,
            )
            .values(balance_minor=Merchant.balance_minor - amount_minor)
            .returning(Merchant.balance_minor)
            .execution_options(synchronize_session="fetch")
        )
    ).scalar_one_or_none()
    if debited is None:
        # A concurrent booking of the same ref may have committed meanwhile.
        existing = await _find(session, account, kind, ref)
        if existing is not None:
            return await _repeated(session, existing, merchant_id, -amount_minor, currency)
        raise await _refusal(session, merchant_id, amount_minor, currency, allow_credit)

    entry = Entry(account, kind, -amount_minor, currency, ref, merchant_id, memo)
    entry_id = await _insert(session, entry, merchant_id, now)
    if entry_id is None:
        # Lost a race with a concurrent booking of the same ref: give the money back.
        await _add_to_balance(session, merchant_id, amount_minor)
        existing = await _find(session, account, kind, ref)
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
    floor = -Merchant.credit_minor if allow_credit else literal(0)
    debited = (
        await session.execute(
            update(Merchant)
            .where(
                Merchant.id == merchant_id,
                Merchant.currency == currency,
                Merchant.balance_minor - total >= floor,
            )
            .values(balance_minor=Merchant.balance_minor - total)
            .returning(Merchant.balance_minor)
            .execution_options(synchronize_session=False)
        )
    ).scalar_one_or_none()
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
