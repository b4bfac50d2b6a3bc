"""Request and response bodies of the admin API (``api/admin.py``), for the OpenAPI document.

Amounts appear twice: as a decimal string in the currency (``"12.00"``) and as integer minor
units (``1200``). Nothing here carries a password hash, an API key hash or a secret, except
:class:`SigningSecretOut`, which has its own audited endpoint.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    # Pass as ``before`` to get the next (older) page; null on the last page.
    next_before: int | None = None


class CountsOut(BaseModel):
    created: int
    updated: int
    unchanged: int


class ChangeOut(BaseModel):
    section: str
    id: str
    action: Literal["create", "update"]
    fields: list[str]


class ApplyOut(BaseModel):
    changed: bool
    dry_run: bool
    counts: dict[str, CountsOut]
    changes: list[ChangeOut]


class ConfigIssueOut(BaseModel):
    entry: str
    key: str
    message: str


class OperatorOut(BaseModel):
    id: str
    country: str
    kind: str
    host: str
    port: int
    system_id: str
    tps: int
    window: int
    enabled: bool
    settings: dict[str, Any]
    ip_allowlist: list[str]
    has_intake_secret: bool
    created_at: datetime
    updated_at: datetime


class ShortNumberOut(BaseModel):
    number: str
    operator: str
    price: str
    price_minor: int
    currency: str
    operator_share_bp: int
    merchant_share_bp: int
    vat_note: str
    default_reply: str


class MerchantOut(BaseModel):
    id: int
    login: str
    currency: str
    credit: str
    credit_minor: int
    balance: str
    balance_minor: int
    timezone: str
    status: str
    has_api_key: bool
    created_at: datetime
    updated_at: datetime


class ServiceOut(BaseModel):
    id: int
    merchant: int
    type: str
    keyword: str
    status: str
    short_numbers: list[str] = Field(description='"number@operator" for each link')
    ip_allowlist: list[str]
    settings: dict[str, Any]
    callback_urls: dict[str, str]
    callback_method: str
    created_at: datetime
    updated_at: datetime


class SigningSecretOut(BaseModel):
    service_id: int
    signing_secret: str


class BalanceOut(BaseModel):
    merchant_id: int
    currency: str
    balance: str
    balance_minor: int
    credit: str
    credit_minor: int
    # What may still be charged: balance + credit.
    available: str
    available_minor: int
    # The sum of the merchant's ledger entries; equals balance_minor when consistent.
    ledger_balance_minor: int
    consistent: bool


class LedgerEntryOut(BaseModel):
    id: int
    account: str
    kind: str
    amount: str
    amount_minor: int
    currency: str
    ref: str
    memo: str
    created_at: datetime


class PayoutIn(BaseModel):
    amount: str = Field(
        pattern=r"^[0-9]+(\.[0-9]+)?$",
        examples=["25.00"],
        description="Decimal string in the merchant's currency; never more than it has earned.",
    )
    currency: str | None = Field(
        default=None, description="If given, must be the merchant's currency."
    )
    reference: str = Field(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$",
        description="Your id of this payout (a bank transfer id): a repeat books nothing.",
    )
    memo: str = Field(default="", max_length=255)


class PayoutOut(BaseModel):
    created: bool
    entry: LedgerEntryOut
    balance: str
    balance_minor: int


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    entity: str
    entity_id: str
    details: dict[str, Any]
