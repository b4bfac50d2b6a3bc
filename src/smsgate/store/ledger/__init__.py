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

from smsgate.domain.money import Split
from smsgate.store.ledger.accounts import (
    PLATFORM_ACCOUNT,
    CurrencyMismatch,
    InsufficientFunds,
    LedgerConflict,
    LedgerError,
    UnknownMerchant,
    merchant_account,
    operator_account,
)
from smsgate.store.ledger.balances import (
    BalanceMismatch,
    account_balance,
    balance,
    balance_mismatches,
    cached_balance,
    list_entries,
)
from smsgate.store.ledger.charges import Charge, book_payout, charge_merchant, charge_merchant_many
from smsgate.store.ledger.entries import Entry, Posted, Posting, credit_merchant, post_entries
from smsgate.store.ledger.revenue import (
    AlsoInsert,
    MoRevenue,
    MoSale,
    book_mo_revenue,
    book_mo_revenues,
    book_mo_revenues_and_insert,
)

__all__ = [
    "PLATFORM_ACCOUNT",
    "AlsoInsert",
    "BalanceMismatch",
    "Charge",
    "CurrencyMismatch",
    "Entry",
    "InsufficientFunds",
    "LedgerConflict",
    "LedgerError",
    "MoRevenue",
    "MoSale",
    "Posted",
    "Posting",
    "Split",
    "UnknownMerchant",
    "account_balance",
    "balance",
    "balance_mismatches",
    "book_mo_revenue",
    "book_mo_revenues",
    "book_mo_revenues_and_insert",
    "book_payout",
    "cached_balance",
    "charge_merchant",
    "charge_merchant_many",
    "credit_merchant",
    "list_entries",
    "merchant_account",
    "operator_account",
    "post_entries",
]
