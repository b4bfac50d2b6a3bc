"""Approved text patterns: literal parts, {*} wildcards, anchored, linear-time matching."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsgate.domain.errors import InvalidPattern
from smsgate.domain.patterns import compile_pattern, compile_patterns


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("Invoice {*} is due", "Invoice 42 is due", True),
        ("Invoice {*} is due", "Invoice  is due", False),  # the variable part is not empty
        ("Invoice {*} is due", "invoice 42 is due", False),  # case matters
        ("Invoice {*} is due", "Invoice 42 is due!", False),  # anchored at the end
        ("Invoice {*} is due", "Your Invoice 42 is due", False),  # and at the start
        ("Invoice {*} is due", "Invoice 4\n2 is due", True),  # any characters
        ("Hello", "Hello", True),
        ("Hello", "Hello there", False),
        ("{*}", "x", True),
        ("{*}", "", False),
        ("{*}{*}", "x", False),
        ("{*}{*}", "xy", True),
        ("a{*}a{*}a", "aaaaa", True),
        ("a{*}a{*}a", "aaaa", False),
        ("Цена: {*} лв.", "Цена: 12.40 лв.", True),
        ("Total (EUR): {*}.", "Total (EUR): 5.", True),  # regex metacharacters are literal
        ("Total (EUR): {*}.", "Total EUR: 5.", False),
        ("a.c {*}", "abc x", False),
        ("{*} [x]", "ab [x]", True),
    ],
)
def test_examples(pattern: str, text: str, expected: bool) -> None:
    assert compile_pattern(pattern).matches(text) is expected


def test_composed_and_decomposed_letters_agree() -> None:
    assert compile_pattern("Чай {*}").matches("Чаи\u0306 5")  # й decomposed in the text
    assert compile_pattern("Чаи\u0306 {*}").matches("Чай 5")  # and in the pattern


def test_empty_list_allows_any_text() -> None:
    assert compile_patterns([]).matches("anything at all")


def test_any_pattern_of_the_list() -> None:
    patterns = compile_patterns(["Code {*}", "Invoice {*} is due"])
    assert patterns.matches("Invoice 7 is due")
    assert patterns.matches("Code 7")
    assert not patterns.matches("Spam")


@pytest.mark.parametrize("source", ["", "   ", "x" * 2001])
def test_unusable_patterns(source: str) -> None:
    with pytest.raises(InvalidPattern):
        compile_pattern(source)


def _reference(pattern: str, text: str) -> bool:
    regex = ".+".join(re.escape(piece) for piece in pattern.split("{*}"))
    return re.fullmatch(regex, text, flags=re.DOTALL) is not None


pieces = st.lists(st.text(alphabet="ab.*(", max_size=3), min_size=1, max_size=5)


@settings(deadline=None)
@given(pieces, st.text(alphabet="ab.*(", max_size=14))
def test_agrees_with_a_regex_reference(parts: list[str], text: str) -> None:
    pattern = "{*}".join(parts)
    if pattern.strip():
        assert compile_pattern(pattern).matches(text) is _reference(pattern, text)


@settings(deadline=None)
@given(pieces, st.lists(st.text(alphabet="ab.*(", min_size=1, max_size=4), max_size=5))
def test_filling_the_wildcards_always_matches(parts: list[str], fills: list[str]) -> None:
    pattern = "{*}".join(parts)
    if not pattern.strip():
        return
    fillers = (fills + ["z"] * len(parts))[: len(parts) - 1]
    text = parts[0] + "".join(f + p for f, p in zip(fillers, parts[1:], strict=True))
    assert compile_pattern(pattern).matches(text)


def test_adversarial_input_is_fast() -> None:
    # The shape that sends a backtracking regex exponential: many wildcards, no match.
    pattern = compile_pattern("a{*}" * 40 + "b")
    text = "a" * 20_000
    started = time.perf_counter()
    assert not pattern.matches(text)
    assert time.perf_counter() - started < 0.5
