"""The subscribers' phones: what each received (its inbox) and what it can pay (its balance).

Handsets come into being when first named (an MT to them, a charge, a balance set). Inboxes
are bounded so a long benchmark cannot grow the process without limit.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from smsgate.domain import money
from smsgate.domain.errors import TextError
from smsgate.domain.text import decode

ChargeStatus = Literal["ok", "insufficient_funds", "currency_mismatch"]


def handset_key(msisdn: str) -> str:
    """The one spelling of a number: digits, international format, no ``+``."""
    return msisdn.strip().removeprefix("+")


def decode_text(payload: bytes, data_coding: int) -> str:
    """The text of a payload (without its header); undecodable octets come back as hex."""
    try:
        return decode(payload, data_coding)
    except (TextError, ValueError):
        return payload.hex()


@dataclass(frozen=True, slots=True)
class InboxMessage:
    """One message as the handset shows it: long messages already joined.

    A single-part message keeps its octets and is decoded when read, which keeps decoding
    off the path of every submit_sm.
    """

    sender: str
    at: datetime
    operator: str
    message_ids: tuple[str, ...]
    parts: int
    data_coding: int
    payload: bytes = b""
    decoded: str | None = None

    @property
    def text(self) -> str:
        if self.decoded is not None:
            return self.decoded
        return decode_text(self.payload, self.data_coding)

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "from": self.sender,
            "at": self.at.isoformat(),
            "operator": self.operator,
            "message_id": self.message_ids[0] if self.message_ids else None,
            "message_ids": list(self.message_ids),
            "parts": self.parts,
            "data_coding": self.data_coding,
        }


@dataclass(frozen=True, slots=True)
class Charge:
    charge_id: int
    operator: str
    msisdn: str
    amount_minor: int
    currency: str
    reference: str
    status: ChargeStatus
    at: datetime
    balance_minor: int | None  # after the charge; None when the balance is unlimited

    def to_json(self, *, duplicate: bool = False) -> dict[str, Any]:
        balance = (
            None
            if self.balance_minor is None
            else money.format_amount(self.balance_minor, self.currency)
        )
        return {
            "status": self.status,
            "charge_id": self.charge_id,
            "operator": self.operator,
            "msisdn": self.msisdn,
            "amount": money.format_amount(self.amount_minor, self.currency),
            "currency": self.currency,
            "reference": self.reference,
            "balance": balance,
            "at": self.at.isoformat(),
            "duplicate": duplicate,
        }


@dataclass(slots=True)
class Handset:
    msisdn: str
    inbox: deque[InboxMessage]
    balance_minor: int | None = None
    currency: str | None = None
    charges: list[Charge] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        balance = None
        if self.balance_minor is not None and self.currency is not None:
            balance = money.format_amount(self.balance_minor, self.currency)
        return {
            "msisdn": self.msisdn,
            "balance": balance,
            "currency": self.currency,
            "received": len(self.inbox),
            "charges": [c.to_json() for c in self.charges],
        }


class Handsets:
    """Every handset the simulator has met, by number."""

    def __init__(self, *, inbox_limit: int = 1000, default_balance_minor: int | None = None):
        self.inbox_limit = inbox_limit
        self.default_balance_minor = default_balance_minor
        self._handsets: dict[str, Handset] = {}
        self._charges: dict[tuple[str, str], Charge] = {}
        self._charge_ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self._handsets)

    def get(self, msisdn: str) -> Handset:
        key = handset_key(msisdn)
        handset = self._handsets.get(key)
        if handset is None:
            handset = Handset(key, deque(maxlen=self.inbox_limit))
            handset.balance_minor = self.default_balance_minor
            self._handsets[key] = handset
        return handset

    def find(self, msisdn: str) -> Handset | None:
        return self._handsets.get(handset_key(msisdn))

    def receive(self, msisdn: str, message: InboxMessage) -> None:
        if self.inbox_limit:
            self.get(msisdn).inbox.append(message)

    def inbox(self, msisdn: str) -> list[InboxMessage]:
        """What the handset received, oldest first (empty for a number never seen)."""
        handset = self.find(msisdn)
        return list(handset.inbox) if handset is not None else []

    def clear_inboxes(self) -> None:
        for handset in self._handsets.values():
            handset.inbox.clear()

    def set_balance(self, msisdn: str, amount_minor: int | None, currency: str | None) -> Handset:
        """Set the balance; ``None`` makes it unlimited again."""
        handset = self.get(msisdn)
        handset.balance_minor = amount_minor
        handset.currency = money.currency_code(currency) if currency else None
        return handset

    def can_pay(self, msisdn: str, amount_minor: int, currency: str) -> ChargeStatus:
        """What a charge of this amount would answer now (nothing is taken)."""
        handset = self.find(msisdn)
        balance = handset.balance_minor if handset else self.default_balance_minor
        if balance is None:
            return "ok"
        if handset is not None and handset.currency not in (None, currency):
            return "currency_mismatch"
        return "ok" if balance >= amount_minor else "insufficient_funds"

    def charge(
        self,
        *,
        operator: str,
        msisdn: str,
        amount_minor: int,
        currency: str,
        reference: str,
        at: datetime,
    ) -> tuple[Charge, bool]:
        """Take ``amount_minor`` from the handset; (the charge, whether it is a repeat).

        A repeated (operator, reference) returns the first outcome and takes nothing: a
        billing platform must be safe to retry.
        """
        previous = self._charges.get((operator, reference))
        if previous is not None:
            return previous, True
        handset = self.get(msisdn)
        status: ChargeStatus = "ok"
        balance = handset.balance_minor
        if balance is not None:
            if handset.currency is None:
                handset.currency = currency
            if handset.currency != currency:
                status = "currency_mismatch"
            elif balance < amount_minor:
                status = "insufficient_funds"
            else:
                balance -= amount_minor
                handset.balance_minor = balance
        charge = Charge(
            charge_id=next(self._charge_ids),
            operator=operator,
            msisdn=handset.msisdn,
            amount_minor=amount_minor,
            currency=currency,
            reference=reference,
            status=status,
            at=at,
            balance_minor=balance,
        )
        handset.charges.append(charge)
        self._charges[(operator, reference)] = charge
        return charge, False
