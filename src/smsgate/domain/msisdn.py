"""Subscriber numbers (MSISDN): accept international format only, normalise, find the country.

Seed 001 (send_bulk.php): ``msisdn`` is "in international format (3598…), country code
first"; a number that is not answers ``INVALID_MSISDN``. Accepted spellings:
- ``359881234567``   country code first, no prefix (the seeds' own form);
- ``+359881234567``  E.164 with plus (also with spaces, dashes, dots or parentheses inside);
- ``00359881234567`` with the international call prefix 00.
A leading single ``0`` is a national (trunk) prefix, so ``0881234567`` is refused rather
than guessed. A query string that carried an unencoded ``+`` arrives with a leading space;
surrounding whitespace is ignored for that reason.

The canonical form everywhere inside smsgate is the digits alone (``Msisdn.digits``), which is
also what an SMPP address with TON 1 / NPI 1 carries.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Final

import phonenumbers

from smsgate.domain.errors import InvalidMsisdn, MsisdnProblem

__all__ = ["Msisdn", "normalize_msisdn", "region_of", "try_normalize_msisdn"]

_MAX_INPUT: Final = 64
_ALLOWED: Final = re.compile(r"\+?[0-9][0-9 ().\-]*")
_SEPARATORS: Final = re.compile(r"[ ().\-]")
_E164_MAX_DIGITS: Final = 15
_NO_REGION: Final = frozenset(
    {None, "", phonenumbers.UNKNOWN_REGION, phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY}
)


@dataclass(frozen=True, slots=True)
class Msisdn:
    digits: str  # "359881234567": country code first, no plus
    country_code: int  # 359
    national_number: str  # "881234567"
    region: str | None  # ISO 3166-1 alpha-2 ("BG"), None for non-geographic codes (+800 …)
    # Kept for ``line_type``, which is worked out only when asked: finding the type matches the
    # number against every pattern of its region, as much work again as validating it, and
    # the send path never needs it.
    parsed: phonenumbers.PhoneNumber = field(repr=False, compare=False)

    @property
    def line_type(self) -> str:
        """ "mobile", "fixed_line", "fixed_line_or_mobile", "unknown", …"""
        name = phonenumbers.PhoneNumberType.to_string(phonenumbers.number_type(self.parsed))
        return name.lower() if name else "unknown"

    @property
    def e164(self) -> str:
        return "+" + self.digits

    @property
    def is_mobile(self) -> bool:
        return self.line_type in ("mobile", "fixed_line_or_mobile")

    def __str__(self) -> str:
        return self.digits


def normalize_msisdn(raw: str, *, require_valid: bool = True) -> Msisdn:
    """Parse an international number; raises InvalidMsisdn (with its ``problem``) otherwise.

    ``require_valid=False`` accepts any number of a plausible length for its country code
    (libphonenumber's "possible"), for test ranges and simulators with made-up numbers.
    """
    text = unicodedata.normalize("NFKC", raw).strip()
    if not text:
        raise InvalidMsisdn("number is empty", problem=MsisdnProblem.EMPTY)
    if len(text) > _MAX_INPUT or not _ALLOWED.fullmatch(text):
        raise InvalidMsisdn(f"{raw!r} is not a phone number", problem=MsisdnProblem.NOT_DIGITS)
    digits = _SEPARATORS.sub("", text)
    if digits.startswith("+"):
        digits = digits[1:]
    elif digits.startswith("00"):
        digits = digits[2:]
    if digits.startswith("0"):
        raise InvalidMsisdn(
            f"{raw!r} is in national format; country code first is required",
            problem=MsisdnProblem.NOT_INTERNATIONAL,
        )
    if len(digits) > _E164_MAX_DIGITS:
        raise InvalidMsisdn(f"{raw!r} is longer than E.164 allows", problem=MsisdnProblem.INVALID)
    try:
        number = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidMsisdn(
            f"{raw!r} is not a valid number", problem=MsisdnProblem.INVALID
        ) from exc
    acceptable = (
        phonenumbers.is_valid_number(number)
        if require_valid
        else phonenumbers.is_possible_number(number)
    )
    if not acceptable or number.country_code is None or number.national_number is None:
        raise InvalidMsisdn(f"{raw!r} is not a valid number", problem=MsisdnProblem.INVALID)
    country_code = int(number.country_code)
    national = phonenumbers.national_significant_number(number)
    region = phonenumbers.region_code_for_number(number)
    return Msisdn(
        digits=f"{country_code}{national}",
        country_code=country_code,
        national_number=national,
        region=region if region not in _NO_REGION else None,
        parsed=number,
    )


def try_normalize_msisdn(raw: str, *, require_valid: bool = True) -> Msisdn | None:
    try:
        return normalize_msisdn(raw, require_valid=require_valid)
    except InvalidMsisdn:
        return None


def region_of(digits: str) -> str | None:
    """ISO country of a number already in canonical digits form; None when unknown."""
    msisdn = try_normalize_msisdn(digits, require_valid=False)
    return msisdn.region if msisdn is not None else None
