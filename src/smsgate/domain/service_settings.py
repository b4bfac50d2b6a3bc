"""The settings of each service type: flat keys on a ``[[services]]`` entry of the provisioning
file, kept in ``services.settings`` once applied (docs/provisioning.md, "Service types").

Each model here is the set of keys its type accepts; any other key is an error. The key names
of ``access_code`` and ``bulk`` are fixed by DESIGN.md §3. Amount keys are decimal strings in
the merchant's currency; the stored form adds ``<key>_minor`` (int) beside each of them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

SERVICE_TYPES = ("access_code", "bulk", "subscription", "safe", "transit", "verification")
ServiceType = Literal["access_code", "bulk", "subscription", "safe", "transit", "verification"]

# Types whose service starts from a subscriber's MO, so it must listen on a short number.
MO_SERVICE_TYPES = frozenset({"access_code", "subscription", "safe", "transit"})

_AMOUNT = re.compile(r"[0-9]+(?:\.[0-9]+)?")
# GSM 03.40 §9.1.2.5 (TP-OA): an alphanumeric sender holds at most 11 characters; a numeric
# one is an address of at most 15 digits (E.164).
_ALNUM_SENDER = re.compile(r"[A-Za-z0-9 ._&-]{1,11}")
_NUMERIC_SENDER = re.compile(r"\+?[0-9]{1,15}")
_PHONE = re.compile(r"\+?[0-9]{3,20}")


def _amount(value: str) -> str:
    if not _AMOUNT.fullmatch(value):
        raise ValueError(f'{value!r} is not an amount such as "2.40" (a non-negative decimal)')
    return value


def _sender(value: str) -> str:
    if not (_ALNUM_SENDER.fullmatch(value) or _NUMERIC_SENDER.fullmatch(value)):
        raise ValueError(
            "a sender is up to 11 letters/digits (alphanumeric) or up to 15 digits (a number)"
        )
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(c.isspace() for c in value)
    ):
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    return value


def _phone(value: str) -> str:
    if not _PHONE.fullmatch(value):
        raise ValueError(f"{value!r} is not a phone number (digits, optionally a leading +)")
    return value


# A decimal string, never a float: see domain/money.py.
AmountText = Annotated[
    str,
    AfterValidator(_amount),
    Field(json_schema_extra={"pattern": _AMOUNT.pattern}, examples=["2.40"]),
]
Seconds = Annotated[int, Field(ge=0, le=10 * 366 * 86400)]
PositiveSeconds = Annotated[int, Field(ge=1, le=10 * 366 * 86400)]
HttpUrl = Annotated[str, AfterValidator(_http_url), Field(max_length=2000)]
Template = Annotated[str, Field(min_length=1, max_length=1000)]


class ServiceSettings(BaseModel):
    """The keys of one service type, with their defaults."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    # Keys holding an amount (decimal string in the merchant's currency).
    amount_keys: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any]) -> Self:
        """Read back ``services.settings`` (the derived ``*_minor`` keys are dropped)."""
        derived = {f"{key}_minor" for key in cls.amount_keys}
        return cls.model_validate({k: v for k, v in stored.items() if k not in derived})


class AccessCodeSettings(ServiceSettings):
    """Seed 000: a paid MO yields a generated code; the merchant's site checks it."""

    # period_from_issue | period_from_first_use: valid for validity_seconds from then;
    # uses: valid for `uses` successful checks (and validity_seconds from issue, if > 0).
    code_kind: Literal["period_from_issue", "period_from_first_use", "uses"] = "uses"
    validity_seconds: Seconds = 3600
    uses: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    code_length: Annotated[int, Field(ge=4, le=32)] = 8
    alphabet: Literal["digits", "letters", "alnum"] = "alnum"
    reply_template: Template = "Your code: {code}"
    max_replies_per_mo: Annotated[int, Field(ge=1, le=10)] = 1
    # An absolute end counted from issue, for any kind (a first-use code never used, say).
    lifetime_seconds: PositiveSeconds | None = None
    # Seed 000's BAN_IP_TEMP: this many failed checks from one address within the window
    # ban it for ban_seconds.
    ban_after_failures: Annotated[int, Field(ge=1, le=100_000)] = 10
    ban_window_seconds: PositiveSeconds = 600
    ban_seconds: PositiveSeconds = 3600
    # Where the hosted code-entry page sends the subscriber after a valid code.
    return_url: HttpUrl | None = None


class BulkSettings(ServiceSettings):
    """Seed 001: the merchant sends SMS over HTTP within quotas; each part is charged."""

    amount_keys: ClassVar[tuple[str, ...]] = ("price_per_part",)

    sender: Annotated[str, AfterValidator(_sender)]
    # Absent: no limit. A limit is at least 1 (0 would silently block every message).
    limit_day: Annotated[int, Field(ge=1)] | None = None
    limit_week: Annotated[int, Field(ge=1)] | None = None
    limit_month: Annotated[int, Field(ge=1)] | None = None
    min_interval_seconds: Seconds = 0
    # What the minimum interval separates: any two messages of the service, or two messages
    # to the same recipient.
    min_interval_scope: Literal["service", "recipient"] = "service"
    # Empty: any text. "{*}" stands for a variable part.
    patterns: list[Annotated[str, Field(min_length=1, max_length=1600)]] = []
    price_per_part: AmountText = "0"
    # Seed 001 speaks of messages up to 160 characters: one part unless raised (max 255 parts
    # in a concatenated SMS, 3GPP TS 23.040 §9.2.3.24.1).
    max_parts: Annotated[int, Field(ge=1, le=255)] = 1


class SubscriptionSettings(ServiceSettings):
    """Seed 002: an MO starts a subscription that is rebilled every period until stopped."""

    amount_keys: ClassVar[tuple[str, ...]] = ("rebill_price",)

    period_seconds: Annotated[int, Field(ge=60, le=366 * 86400)] = 86400
    # Absent: the price of the short number the subscription started on.
    rebill_price: AmountText | None = None
    code_length: Annotated[int, Field(ge=4, le=32)] = 6
    alphabet: Literal["digits", "letters", "alnum"] = "digits"
    reply_template: Template = "Your access code: {code}"
    stop_keywords: list[Annotated[str, Field(min_length=1, max_length=64)]] = ["STOP"]
    # The subscription ends after this many failed rebills in a row.
    max_failed_rebills: Annotated[int, Field(ge=1, le=100)] = 3


class SafeSettings(ServiceSettings):
    """Seed 003: a price paid in N messages from one phone, with an optional last delay."""

    messages: Annotated[int, Field(ge=2, le=100)]
    # Seed 003: "an option to delay the last transaction. Typical delay time is 24 hours."
    last_delay_seconds: Seconds = 0
    session_timeout_seconds: Annotated[int, Field(ge=60, le=366 * 86400)] = 30 * 86400
    # Placeholders: {session} (the session id), {left} (time left, "H h M min").
    reply_started: Template = "Your message is received, session {session} started."
    reply_received: Template = "Your message is received for session {session}."
    reply_before_last: Template = (
        "Your message is received for session {session}. "
        "Do NOT send the last message ({left} left)."
    )
    reply_closed: Template = "Your message is received, session {session} closed."
    reply_too_early: Template = "Error: your message cannot be processed ({left} left)."


class TransitSettings(ServiceSettings):
    """SmsCoin "sms:transit": each paid MO is passed to the merchant's Result URL."""

    # Empty: the short number's default_reply.
    reply_template: Annotated[str, Field(max_length=1000)] = ""


class VerificationSettings(ServiceSettings):
    """Seed 004: the subscriber proves a phone number by calling one of ours."""

    # The numbers a subscriber may be told to call (wait_call.php's all_phones).
    call_numbers: Annotated[list[Annotated[str, AfterValidator(_phone)]], Field(min_length=1)]
    # Seed 004: the call must arrive within 15 minutes.
    wait_seconds: Annotated[int, Field(ge=60, le=86400)] = 900


SETTINGS_MODELS: dict[str, type[ServiceSettings]] = {
    "access_code": AccessCodeSettings,
    "bulk": BulkSettings,
    "subscription": SubscriptionSettings,
    "safe": SafeSettings,
    "transit": TransitSettings,
    "verification": VerificationSettings,
}


def settings_model(service_type: str) -> type[ServiceSettings]:
    return SETTINGS_MODELS[service_type]
