"""Reply templates: parsing, rendering, and the worst-case length check."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsgate.domain.errors import InvalidTemplate, TemplateTooLong
from smsgate.domain.templates import (
    NO_EXPIRY,
    PLACEHOLDERS,
    Placeholder,
    check_fits,
    format_valid_until,
    parse_template,
    render,
    worst_case_values,
)
from smsgate.domain.text import Encoding

VALUES = {
    "code": "K7M2XQ9P",
    "valid_until": "2026-01-01 14:00",
    "uses": "3",
    "validity_minutes": "60",
    "service": "Shop",
    "msisdn": "359881234567",
}


class TestParse:
    def test_pieces(self) -> None:
        template = parse_template("Your code: {code}, valid until {valid_until}.")
        assert template.pieces == (
            "Your code: ",
            Placeholder("code"),
            ", valid until ",
            Placeholder("valid_until"),
            ".",
        )
        assert template.placeholders == {"code", "valid_until"}

    def test_every_documented_placeholder_is_known(self) -> None:
        source = " ".join(f"{{{name}}}" for name in sorted(PLACEHOLDERS))
        assert parse_template(source).placeholders == PLACEHOLDERS

    def test_doubled_braces_are_literal(self) -> None:
        template = parse_template("{{x}} {code} }}")
        assert render(template, VALUES) == "{x} K7M2XQ9P }"

    @pytest.mark.parametrize(
        "source",
        [
            "Code {kod}",  # unknown name
            "Code {Code}",  # names are exact
            "Code {code.__class__}",  # no attribute access, ever
            "Code {0}",
            "Code {}",
            "Code {code",  # never closed
            "Code code}",  # stray closing brace
            "",
            "   ",
            "x" * 2001,
        ],
    )
    def test_refused(self, source: str) -> None:
        with pytest.raises(InvalidTemplate):
            parse_template(source)

    def test_required_placeholder(self) -> None:
        with pytest.raises(InvalidTemplate, match=r"\{code\}"):
            parse_template("Thank you", required=frozenset({"code"}))
        assert parse_template("Code {code}", required=frozenset({"code"}))

    def test_custom_allowed_set(self) -> None:
        template = parse_template("Safe {session}", allowed=frozenset({"session"}))
        assert render(template, {"session": "X1"}) == "Safe X1"


class TestRender:
    def test_cyrillic_template(self) -> None:
        template = parse_template("Вашият код: {code}")
        assert render(template, VALUES) == "Вашият код: K7M2XQ9P"

    def test_missing_value_is_named(self) -> None:
        with pytest.raises(InvalidTemplate, match="valid_until"):
            render(parse_template("{valid_until}"), {"code": "x"})

    def test_values_are_not_reinterpreted(self) -> None:
        assert render(parse_template("{service}"), {"service": "{code}"}) == "{code}"

    @settings(deadline=None)
    @given(st.text(max_size=200))
    def test_text_without_braces_renders_as_itself(self, text: str) -> None:
        text = text.replace("{", "").replace("}", "")
        if text.strip():
            assert render(parse_template(text), {}) == text

    @settings(deadline=None)
    @given(st.text(max_size=100))
    def test_escaped_text_round_trips(self, text: str) -> None:
        escaped = text.replace("{", "{{").replace("}", "}}")
        if escaped.strip():
            assert render(parse_template(escaped), {}) == text


class TestValidUntil:
    def test_local_time_to_the_minute(self) -> None:
        when = datetime(2026, 7, 1, 9, 30, 59, tzinfo=UTC)
        assert format_valid_until(when, ZoneInfo("Europe/Sofia")) == "2026-07-01 12:30"

    def test_no_expiry(self) -> None:
        assert format_valid_until(None, UTC) == NO_EXPIRY


class TestFits:
    def test_gsm_reply_in_one_part(self) -> None:
        template = parse_template("Your code: {code}, valid until {valid_until}")
        seg = check_fits(template, worst_case_values(code_length=8))
        assert seg.parts == 1
        assert seg.encoding is Encoding.GSM7

    def test_too_long_for_one_part(self) -> None:
        template = parse_template("x" * 155 + " {code}")
        with pytest.raises(TemplateTooLong) as caught:
            check_fits(template, worst_case_values(code_length=8))
        assert caught.value.parts == 2
        assert check_fits(template, worst_case_values(code_length=8), max_parts=2).parts == 2

    def test_boundary_is_exact(self) -> None:
        # 152 literal septets + an 8-symbol code = 160 septets: one part, exactly.
        template = parse_template("x" * 152 + "{code}")
        assert check_fits(template, worst_case_values(code_length=8)).length == 160
        with pytest.raises(TemplateTooLong):
            check_fits(template, worst_case_values(code_length=9))

    def test_cyrillic_service_name_switches_to_ucs2(self) -> None:
        template = parse_template("{service}: your code is {code}, valid until {valid_until}")
        worst = worst_case_values(code_length=8, service="Магазин за книги и още")
        with pytest.raises(TemplateTooLong):
            check_fits(template, worst)
        assert check_fits(template, worst, max_parts=2).encoding is Encoding.UCS2

    def test_extension_characters_count_double(self) -> None:
        template = parse_template("€" * 76 + "{code}")
        assert check_fits(template, worst_case_values(code_length=8)).length == 160
        with pytest.raises(TemplateTooLong):
            check_fits(parse_template("€" * 77 + "{code}"), worst_case_values(code_length=8))

    def test_msisdn_worst_case_is_fifteen_digits(self) -> None:
        assert worst_case_values()["msisdn"] == "9" * 15
