"""Money: integer minor units with a currency, parsed from and formatted to decimal strings.

Rules (docs/provisioning.md, "Money"):

- An amount is an ``int`` of minor units (stotinki, cents, kopecks) beside an ISO 4217 code.
  Floats never enter: parsing takes only ``str``, and ``bool``/``float``/``Decimal`` are refused.
- A currency must be an ISO 4217 code that has minor units (the table below). An unknown code
  is refused rather than given a default exponent: a typo such as ``"BNG"`` would otherwise
  book real money in a currency nobody pays in.
- A decimal string may not carry more decimals than its currency has (``"2.405"`` BGN is an
  error, and so is ``"2.400"``): the amount a person wrote is the amount booked, no rounding.
- Shares are basis points (1/100 of a percent). :func:`split_gross` rounds each named share
  down and gives the remainder to the platform, so the parts always sum to the gross.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

# Every exception this module raises.
#   MoneyError (ValueError)
#   ├── UnknownCurrency: the code is not in the table
#   ├── InvalidAmount: not a decimal string, too many decimals, negative, too large
#   └── InvalidShare: a share outside 0..100 %, or shares adding up to more than 100 %


class MoneyError(ValueError):
    """A money value that cannot be accepted as written."""


class UnknownCurrency(MoneyError):
    pass


class InvalidAmount(MoneyError):
    pass


class InvalidShare(MoneyError):
    pass


# ISO 4217 (current list): the codes whose minor unit is not 2 decimals, then all the others.
_EXPONENTS_TEXT: Final = {
    0: "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF",
    3: "BHD IQD JOD KWD LYD OMR TND",
    4: "CLF UYW",
    2: (
        "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN "
        "BWP BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB "
        "EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS "
        "KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN "
        "MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD "
        "SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS "
        "UAH USD USN UYU UZS VED VES WST XCD YER ZAR ZMW ZWG"
    ),
}

CURRENCY_EXPONENTS: Final[dict[str, int]] = {
    code: exponent for exponent, codes in _EXPONENTS_TEXT.items() for code in codes.split()
}

# Amounts are stored in signed 64-bit columns (BIGINT).
MAX_MINOR: Final = 2**63 - 1

BASIS_POINTS: Final = 10_000  # 100 %

_DECIMAL = re.compile(r"(?P<sign>-?)(?P<whole>[0-9]+)(?:\.(?P<frac>[0-9]+))?")
_PERCENT = re.compile(r"(?P<whole>[0-9]+)(?:\.(?P<frac>[0-9]+))?%?")


def currency_code(code: str) -> str:
    """The ISO 4217 code, upper-cased, or :class:`UnknownCurrency`."""
    if not isinstance(code, str):
        raise UnknownCurrency(f"a currency is a 3-letter ISO 4217 code, not {type(code).__name__}")
    upper = code.upper()
    if upper not in CURRENCY_EXPONENTS:
        raise UnknownCurrency(f"unknown currency {code!r}: use an ISO 4217 code such as BGN, EUR")
    return upper


def minor_exponent(currency: str) -> int:
    """How many decimals the currency's minor unit has (BGN 2, JPY 0, KWD 3)."""
    return CURRENCY_EXPONENTS[currency_code(currency)]


def parse_amount(text: str, currency: str, *, allow_negative: bool = False) -> int:
    """Parse a decimal string such as ``"2.40"`` into minor units (``240`` for BGN), exactly."""
    if not isinstance(text, str):
        # bool, float and Decimal are refused alike: an amount is written as text.
        raise InvalidAmount(
            f'an amount is a decimal string such as "2.40", not {type(text).__name__}'
        )
    exponent = minor_exponent(currency)
    match = _DECIMAL.fullmatch(text)
    if match is None:
        raise InvalidAmount(f'{text!r} is not a decimal amount such as "2.40"')
    frac = match["frac"] or ""
    if len(frac) > exponent:
        raise InvalidAmount(
            f"{text!r} has {len(frac)} decimals; {currency_code(currency)} has {exponent}"
        )
    negative = match["sign"] == "-"
    minor = int(match["whole"]) * 10**exponent + int(frac.ljust(exponent, "0") or "0")
    if negative and minor != 0:
        if not allow_negative:
            raise InvalidAmount(f"{text!r}: a negative amount is not allowed here")
        minor = -minor
    if abs(minor) > MAX_MINOR:
        raise InvalidAmount(f"{text!r} is too large")
    return int(minor)


def format_amount(minor: int, currency: str) -> str:
    """Minor units as a decimal string with exactly the currency's decimals: 240 BGN → "2.40"."""
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise InvalidAmount(f"minor units are an int, not {type(minor).__name__}")
    exponent = minor_exponent(currency)
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 10**exponent)
    if exponent == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:0{exponent}d}"


@dataclass(frozen=True, slots=True)
class Money:
    """An amount with its currency; arithmetic only between equal currencies."""

    minor: int
    currency: str

    @classmethod
    def parse(cls, text: str, currency: str, *, allow_negative: bool = False) -> Money:
        code = currency_code(currency)
        return cls(parse_amount(text, code, allow_negative=allow_negative), code)

    def __add__(self, other: Money) -> Money:
        return Money(self.minor + self._same(other).minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        return Money(self.minor - self._same(other).minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.minor, self.currency)

    def _same(self, other: Money) -> Money:
        if other.currency != self.currency:
            raise MoneyError(f"cannot combine {self.currency} with {other.currency}")
        return other

    def __str__(self) -> str:
        return f"{format_amount(self.minor, self.currency)} {self.currency}"


def parse_share(text: str) -> int:
    """A percentage written as text (``"45.5"`` or ``"45.5%"``) in basis points (4550).

    At most two decimals, since a basis point is 0.01 %; within 0..100 %.
    """
    if not isinstance(text, str):
        raise InvalidShare(
            f'a share is a percent string such as "45.5%", not {type(text).__name__}'
        )
    match = _PERCENT.fullmatch(text)
    if match is None:
        raise InvalidShare(f'{text!r} is not a percentage such as "45.5%"')
    frac = match["frac"] or ""
    if len(frac) > 2:
        raise InvalidShare(f"{text!r}: at most 2 decimals (one basis point is 0.01%)")
    bp = int(match["whole"]) * 100 + int(frac.ljust(2, "0"))
    if bp > BASIS_POINTS:
        raise InvalidShare(f"{text!r} is more than 100%")
    return bp


def format_share(bp: int) -> str:
    """Basis points as a percent string: 4550 → "45.5%", 10000 → "100%"."""
    whole, frac = divmod(bp, 100)
    if frac == 0:
        return f"{whole}%"
    return f"{whole}.{frac:02d}".rstrip("0") + "%"


@dataclass(frozen=True, slots=True)
class Split:
    """A gross amount divided between the operator, the merchant and the platform."""

    operator: int
    merchant: int
    platform: int

    @property
    def gross(self) -> int:
        return self.operator + self.merchant + self.platform


def check_shares(operator_share_bp: int, merchant_share_bp: int) -> None:
    for name, bp in (("operator", operator_share_bp), ("merchant", merchant_share_bp)):
        if isinstance(bp, bool) or not isinstance(bp, int) or not 0 <= bp <= BASIS_POINTS:
            raise InvalidShare(f"the {name} share must be 0..{BASIS_POINTS} basis points")
    if operator_share_bp + merchant_share_bp > BASIS_POINTS:
        raise InvalidShare("the operator and merchant shares add up to more than 100%")


def split_gross(gross_minor: int, operator_share_bp: int, merchant_share_bp: int) -> Split:
    """Divide ``gross_minor`` (>= 0) by basis points; the parts always sum to the gross.

    The operator's and the merchant's shares are each rounded down to a whole minor unit;
    the platform gets what is left, so any rounding remainder (at most 2 minor units) is the
    platform's, and nobody is ever paid a fraction that was not collected.
    """
    if isinstance(gross_minor, bool) or not isinstance(gross_minor, int) or gross_minor < 0:
        raise InvalidAmount("the gross amount must be a non-negative int of minor units")
    check_shares(operator_share_bp, merchant_share_bp)
    operator = gross_minor * operator_share_bp // BASIS_POINTS
    merchant = gross_minor * merchant_share_bp // BASIS_POINTS
    return Split(operator=operator, merchant=merchant, platform=gross_minor - operator - merchant)
