"""MO keyword extraction and service selection by short number and keyword."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsgate.domain.errors import InvalidKeyword
from smsgate.domain.routing import (
    RouteCandidate,
    find_conflicts,
    keyword_of,
    normalize_keyword,
    pick_service,
    split_keyword,
)


@pytest.mark.parametrize(
    ("text", "keyword"),
    [
        ("KOD", "kod"),
        ("  kod  ", "kod"),
        ("Kod 123", "kod"),
        ("kod\nmore", "kod"),
        ("STOP.", "stop"),
        ("«Код» пожалуйста", "код"),
        ("КОД", "код"),
        ("ｋｏｄ", "kod"),  # full-width letters
        ("\u200bKOD", "kod"),  # a zero-width space pasted in front
        ("KOD-1 x", "kod-1"),
        ("", ""),
        ("   ", ""),
        ("!!!", ""),
        ("Straße", "strasse"),
    ],
)
def test_keyword_of(text: str, keyword: str) -> None:
    assert keyword_of(text) == keyword


def test_split_keyword_keeps_the_rest() -> None:
    assert split_keyword("  Safe   12 34 ") == ("safe", "12 34")
    assert split_keyword("ONE") == ("one", "")


def test_latin_and_cyrillic_look_alikes_stay_different() -> None:
    assert keyword_of("KOD") != keyword_of("КОD")


@pytest.mark.parametrize(
    ("configured", "normalised"),
    [("KOD", "kod"), (" Код ", "код"), ("", ""), ("  ", ""), ("KOD-1", "kod-1")],
)
def test_normalize_keyword(configured: str, normalised: str) -> None:
    assert normalize_keyword(configured) == normalised


@pytest.mark.parametrize("configured", ["KOD VIP", "KOD!", "...", "k" * 65])
def test_unmatchable_keywords_are_refused(configured: str) -> None:
    with pytest.raises(InvalidKeyword):
        normalize_keyword(configured)


CANDIDATES = [
    RouteCandidate("1851", "KOD", 102),
    RouteCandidate("1851", "VIP", 103),
    RouteCandidate("1851", "", 104),
    RouteCandidate("1916", "KOD", 202),
    RouteCandidate("7781", "Код", 301),
]


@pytest.mark.parametrize(
    ("number", "text", "service"),
    [
        ("1851", "kod", 102),
        ("1851", "Vip please", 103),
        ("1851", "anything else", 104),  # catch-all on its own number
        ("1851", "", 104),
        ("1916", "KOD", 202),
        ("1916", "VIP", None),  # no catch-all on 1916
        ("+1851", "kod", 102),
        ("7781", "КОД", 301),
        ("7781", "KOD", None),
        ("9999", "kod", None),
    ],
)
def test_pick_service(number: str, text: str, service: int | None) -> None:
    assert pick_service(CANDIDATES, number, text) == service


def test_exact_keyword_beats_catch_all_whatever_the_order() -> None:
    assert pick_service(list(reversed(CANDIDATES)), "1851", "KOD") == 102


def test_duplicate_route_resolves_to_lowest_id_and_is_reported() -> None:
    routes = [RouteCandidate("1851", "KOD", 9), RouteCandidate("1851", "kod", 5)]
    assert pick_service(routes, "1851", "kod") == 5
    assert find_conflicts(routes) == [("1851", "kod", [5, 9])]


def test_invalid_configured_keyword_never_matches() -> None:
    routes = [RouteCandidate("1851", "KOD VIP", 1), RouteCandidate("1851", "", 2)]
    assert pick_service(routes, "1851", "KOD VIP") == 2


def test_no_conflicts_in_a_clean_table() -> None:
    assert find_conflicts(CANDIDATES) == []


@settings(deadline=None)
@given(st.text(max_size=40), st.text(max_size=40))
def test_keyword_survives_normalising_and_surroundings(word: str, tail: str) -> None:
    keyword = keyword_of(word)
    if keyword:
        assert normalize_keyword(keyword) == keyword
        assert keyword_of(f"  {keyword}  {tail}") == keyword


KEYWORD_LETTERS = (
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    "АБВГДЕЁЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯабвгдеёжзийклмнопрстуфхцчшщъыьэюя"
    "ІіЇїЄєҐґΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩαβγδεζηθικλμνξοπρστυφχψως"
)


@settings(deadline=None)
@given(st.text(alphabet=st.sampled_from(KEYWORD_LETTERS), min_size=1, max_size=20))
def test_a_configured_word_matches_its_mo_in_any_case(word: str) -> None:
    routes = [RouteCandidate("1851", word, 1)]
    assert pick_service(routes, "1851", f"{word} tail") == 1
    assert pick_service(routes, "1851", f"{word.upper()} tail") == 1
    assert pick_service(routes, "1851", f"{word.lower()}") == 1
