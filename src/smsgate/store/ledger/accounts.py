"""Ledger accounts and the errors of the ledger."""

from __future__ import annotations

from typing import Final

# Every exception the ledger raises.
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


def merchant_of(account: str) -> int | None:
    prefix, _, rest = account.partition(":")
    return int(rest) if prefix == "merchant" else None
