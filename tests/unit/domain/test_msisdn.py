"""MSISDN rules: international format in, canonical digits and the country out."""

from __future__ import annotations

import pytest

from smsgate.domain.errors import InvalidMsisdn, MsisdnProblem
from smsgate.domain.msisdn import normalize_msisdn, region_of, try_normalize_msisdn


@pytest.mark.parametrize(
    ("raw", "digits", "region"),
    [
        ("359881234567", "359881234567", "BG"),  # seed 001 form
        ("+359881234567", "359881234567", "BG"),
        ("00359881234567", "359881234567", "BG"),
        (" 359881234567", "359881234567", "BG"),  # an unencoded '+' in a query string
        ("+359 88 123 4567", "359881234567", "BG"),
        ("359-87-812-3456", "359878123456", "BG"),
        ("79161234567", "79161234567", "RU"),
        ("+7 (916) 123-45-67", "79161234567", "RU"),
        ("77012345678", "77012345678", "KZ"),  # +7 shared: the number range decides
        ("380501234567", "380501234567", "UA"),
        ("+380 67 123 4567", "380671234567", "UA"),
        ("００３５９８８１２３４５６７", "359881234567", "BG"),  # full-width digits
    ],
)
def test_international_numbers_are_accepted(raw: str, digits: str, region: str) -> None:
    msisdn = normalize_msisdn(raw)
    assert msisdn.digits == digits
    assert msisdn.region == region
    assert msisdn.e164 == "+" + digits
    assert str(msisdn) == digits


def test_parts_of_the_number() -> None:
    msisdn = normalize_msisdn("359881234567")
    assert msisdn.country_code == 359
    assert msisdn.national_number == "881234567"
    assert msisdn.line_type == "mobile"
    assert msisdn.is_mobile


def test_fixed_line_is_valid_but_not_mobile() -> None:
    msisdn = normalize_msisdn("35929876543")  # Sofia landline
    assert msisdn.region == "BG"
    assert not msisdn.is_mobile


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("", MsisdnProblem.EMPTY),
        ("   ", MsisdnProblem.EMPTY),
        ("0881234567", MsisdnProblem.NOT_INTERNATIONAL),  # Bulgarian national format
        ("89161234567", MsisdnProblem.INVALID),  # Russian national 8-prefix: +8 9… is no country
        ("0501234567", MsisdnProblem.NOT_INTERNATIONAL),  # Ukrainian national format
        ("+0881234567", MsisdnProblem.NOT_INTERNATIONAL),
        ("3598812345", MsisdnProblem.INVALID),  # too short for Bulgaria
        ("359881234567890123", MsisdnProblem.INVALID),  # past 15 digits
        ("35988123456a", MsisdnProblem.NOT_DIGITS),
        ("+359+881234567", MsisdnProblem.NOT_DIGITS),
        ("tel:+359881234567", MsisdnProblem.NOT_DIGITS),
        ("1" * 100, MsisdnProblem.NOT_DIGITS),
    ],
)
def test_invalid_numbers_are_refused(raw: str, problem: MsisdnProblem) -> None:
    with pytest.raises(InvalidMsisdn) as caught:
        normalize_msisdn(raw)
    assert caught.value.problem is problem
    assert try_normalize_msisdn(raw) is None


def test_possible_but_unassigned_number_only_with_require_valid_off() -> None:
    raw = "359100000001"  # right length for +359, no such range
    with pytest.raises(InvalidMsisdn):
        normalize_msisdn(raw)
    lenient = normalize_msisdn(raw, require_valid=False)
    assert lenient.digits == raw
    assert lenient.region == "BG"


def test_non_geographic_number_has_no_region() -> None:
    assert normalize_msisdn("80012345678").region is None


def test_region_of_canonical_digits() -> None:
    assert region_of("380501234567") == "UA"
    assert region_of("79161234567") == "RU"
    assert region_of("nonsense") is None
