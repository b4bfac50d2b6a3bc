"""Money: exact parsing and formatting of minor units, shares in basis points, splits."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsgate.domain import money
from smsgate.domain.money import (
    BASIS_POINTS,
    MAX_MINOR,
    InvalidAmount,
    InvalidShare,
    Money,
    MoneyError,
    UnknownCurrency,
    format_amount,
    format_share,
    parse_amount,
    parse_share,
    split_gross,
)

currencies = st.sampled_from(sorted(money.CURRENCY_EXPONENTS))
minor_units = st.integers(min_value=-MAX_MINOR, max_value=MAX_MINOR)


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("2.40", "BGN", 240),
        ("2.4", "BGN", 240),
        ("2", "BGN", 200),
        ("0.05", "EUR", 5),
        ("0", "USD", 0),
        ("50.00", "RUB", 5000),
        ("1234567.89", "UAH", 123456789),
        ("007.10", "BGN", 710),
        ("100", "JPY", 100),
        ("1.234", "KWD", 1234),
        ("1.2345", "CLF", 12345),
        ("2.40", "bgn", 240),
    ],
)
def test_parse_amount_examples(text: str, currency: str, minor: int) -> None:
    assert parse_amount(text, currency) == minor


@pytest.mark.parametrize(
    ("text", "currency"),
    [
        ("2.405", "BGN"),  # more decimals than the currency has
        ("2.400", "BGN"),  # even zeros: the amount is what was written
        ("1.5", "JPY"),
        ("1.0", "JPY"),
        ("-1.00", "BGN"),  # negative where not allowed
        ("1e3", "BGN"),
        (" 2.40", "BGN"),
        ("2.40 ", "BGN"),
        ("2.", "BGN"),
        (".5", "BGN"),
        ("+2", "BGN"),
        ("2,40", "BGN"),
        ("", "BGN"),
        ("two", "BGN"),
        ("٢", "BGN"),  # a non-ASCII digit
        ("1_000", "BGN"),
        ("92233720368547758.08", "BGN"),  # one past BIGINT
    ],
)
def test_parse_amount_rejects(text: str, currency: str) -> None:
    with pytest.raises(InvalidAmount):
        parse_amount(text, currency)


@pytest.mark.parametrize("value", [2.4, 2, True, Decimal("2.40"), None, b"2.40"])
def test_parse_amount_takes_only_text(value: Any) -> None:
    with pytest.raises(InvalidAmount):
        parse_amount(value, "BGN")


@pytest.mark.parametrize("code", ["XXX", "BNG", "EU", "EURO", "", "XAU"])
def test_unknown_currencies_are_refused(code: str) -> None:
    with pytest.raises(UnknownCurrency):
        parse_amount("1", code)
    with pytest.raises(UnknownCurrency):
        money.currency_code(code)


def test_currency_exponents() -> None:
    assert money.minor_exponent("BGN") == 2
    assert money.minor_exponent("eur") == 2
    assert money.minor_exponent("JPY") == 0
    assert money.minor_exponent("BHD") == 3
    for code in ("BGN", "EUR", "USD", "RUB", "UAH", "RON", "KZT", "GBP"):
        assert money.CURRENCY_EXPONENTS[code] == 2


def test_negative_amounts_when_allowed() -> None:
    assert parse_amount("-2.40", "BGN", allow_negative=True) == -240
    assert parse_amount("-0.00", "BGN") == 0  # no sign on zero


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (240, "BGN", "2.40"),
        (5, "BGN", "0.05"),
        (0, "EUR", "0.00"),
        (-240, "BGN", "-2.40"),
        (-5, "USD", "-0.05"),
        (100, "JPY", "100"),
        (1234, "KWD", "1.234"),
    ],
)
def test_format_amount_examples(minor: int, currency: str, text: str) -> None:
    assert format_amount(minor, currency) == text


@given(minor=minor_units, currency=currencies)
def test_format_then_parse_is_identity(minor: int, currency: str) -> None:
    text = format_amount(minor, currency)
    assert parse_amount(text, currency, allow_negative=True) == minor
    exponent = money.minor_exponent(currency)
    assert len(text.partition(".")[2]) == exponent


@given(whole=st.integers(0, 10**12), frac=st.integers(0, 99))
def test_parse_two_decimals_matches_decimal_arithmetic(whole: int, frac: int) -> None:
    text = f"{whole}.{frac:02d}"
    assert parse_amount(text, "BGN") == int(Decimal(text) * 100)


def test_format_refuses_non_int() -> None:
    with pytest.raises(InvalidAmount):
        format_amount(2.4, "BGN")  # type: ignore[arg-type]
    with pytest.raises(InvalidAmount):
        format_amount(True, "BGN")


def test_money_value() -> None:
    price = Money.parse("2.40", "bgn")
    assert price == Money(240, "BGN")
    assert str(price + Money(5, "BGN")) == "2.45 BGN"
    assert (price - Money(300, "BGN")).minor == -60
    assert (-price).minor == -240
    with pytest.raises(MoneyError):
        price + Money(1, "EUR")


@pytest.mark.parametrize(
    ("text", "bp"),
    [("45.5%", 4550), ("45.5", 4550), ("0", 0), ("0%", 0), ("100%", 10000), ("0.01", 1)],
)
def test_parse_share(text: str, bp: int) -> None:
    assert parse_share(text) == bp


@pytest.mark.parametrize("text", ["100.01", "101%", "45.555", "-1", "", "%", "45,5", " 5"])
def test_parse_share_rejects(text: str) -> None:
    with pytest.raises(InvalidShare):
        parse_share(text)


@pytest.mark.parametrize("value", [45, 0.5, None])
def test_parse_share_takes_only_text(value: Any) -> None:
    with pytest.raises(InvalidShare):
        parse_share(value)


@given(st.integers(0, BASIS_POINTS))
def test_format_share_round_trips(bp: int) -> None:
    assert parse_share(format_share(bp)) == bp


def test_split_example() -> None:
    # 2.40 BGN at 45% operator, 50% merchant: 1.08 + 1.20 + 0.12.
    assert split_gross(240, 4500, 5000) == money.Split(operator=108, merchant=120, platform=12)


def test_split_remainder_goes_to_the_platform() -> None:
    # 1 stotinka shared 1/3 each way: both named shares round down to 0.
    assert split_gross(1, 3333, 3333) == money.Split(0, 0, 1)
    # All of it shared out: the rounding remainder is still the platform's.
    assert split_gross(101, 5000, 5000) == money.Split(50, 50, 1)


@given(
    gross=st.integers(0, MAX_MINOR // BASIS_POINTS),
    shares=st.integers(0, BASIS_POINTS).flatmap(
        lambda op: st.tuples(st.just(op), st.integers(0, BASIS_POINTS - op))
    ),
)
def test_split_always_sums_to_the_gross(gross: int, shares: tuple[int, int]) -> None:
    operator_bp, merchant_bp = shares
    split = split_gross(gross, operator_bp, merchant_bp)
    assert split.operator + split.merchant + split.platform == gross == split.gross
    assert min(split.operator, split.merchant, split.platform) >= 0
    # Named shares are exact floors; the platform is owed its share plus < 2 minor units.
    assert split.operator == gross * operator_bp // BASIS_POINTS
    assert split.merchant == gross * merchant_bp // BASIS_POINTS
    platform_exact = Decimal(gross * (BASIS_POINTS - operator_bp - merchant_bp)) / BASIS_POINTS
    assert 0 <= split.platform - platform_exact < 2


@pytest.mark.parametrize(
    ("gross", "operator_bp", "merchant_bp"),
    [(-1, 0, 0), (100, 6000, 5000), (100, -1, 0), (100, 0, 10001), (100, True, 0)],
)
def test_split_refuses_bad_input(gross: int, operator_bp: int, merchant_bp: int) -> None:
    with pytest.raises(MoneyError):
        split_gross(gross, operator_bp, merchant_bp)
