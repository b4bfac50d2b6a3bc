"""Pure rules of bulk sending: the status word of every refusal, routing choices, approved
texts, address allowlists, quota window keys, and the seed endpoint's parameter decoding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsgate.api.bulk import _decode_pairs
from smsgate.services.bulk import Refusal, ip_allowed, text_matches
from smsgate.services.quotas import window_keys
from smsgate.services.routes import HOME_PRIORITY, RouteChoice, RouteRow, pick_route

SEED_WORDS = {
    "BAN_IP_TEMP",
    "INVALID_IP",
    "INVALID_INPUT",
    "INVALID_PATTERN",
    "SERVICE_DISABLED",
    "INVALID_MSISDN",
    "LIMIT_DAY",
    "LIMIT_WEEK",
    "LIMIT_MONTH",
    "LIMIT_DELAY",
}


def test_every_refusal_answers_a_seed_word_and_every_word_is_reachable() -> None:
    assert {refusal.word for refusal in Refusal} == SEED_WORDS


@pytest.mark.parametrize(
    ("refusal", "word"),
    [
        (Refusal.OPTED_OUT, "INVALID_MSISDN"),
        (Refusal.NO_ROUTE, "INVALID_MSISDN"),
        (Refusal.TOO_LONG, "INVALID_INPUT"),
        (Refusal.UNKNOWN_SERVICE, "INVALID_INPUT"),
        (Refusal.NO_FUNDS, "SERVICE_DISABLED"),
    ],
)
def test_documented_mappings(refusal: Refusal, word: str) -> None:
    assert refusal.word == word


ROUTES = [
    RouteRow("BG", "vivacom", 1),
    RouteRow("BG", "a1", 2),
    RouteRow(None, "global", 5),
    RouteRow(None, "backup", 9),
]


@pytest.mark.parametrize(
    ("country", "operators", "expected"),
    [
        ("BG", [], RouteChoice("vivacom", "BG", 1)),
        (
            "RO",
            [("orange-ro", "RO"), ("digi-ro", "RO")],
            RouteChoice("digi-ro", "RO", HOME_PRIORITY),
        ),
        ("DE", [("orange-ro", "RO")], RouteChoice("global", None, 5)),
        (None, [], RouteChoice("global", None, 5)),
    ],
)
def test_pick_route(
    country: str | None, operators: list[tuple[str, str]], expected: RouteChoice
) -> None:
    assert pick_route(ROUTES, operators, country) == expected


def test_no_route_at_all() -> None:
    assert pick_route([RouteRow("BG", "a1", 0)], [], "DE") is None
    assert pick_route([], [], None) is None


def test_ties_on_priority_go_to_the_lowest_operator_id() -> None:
    rows = [RouteRow("BG", "zeta", 0), RouteRow("BG", "alpha", 0)]
    assert pick_route(rows, [], "BG") == RouteChoice("alpha", "BG", 0)


@pytest.mark.parametrize(
    ("patterns", "text", "ok"),
    [
        ([], "anything at all", True),
        (["Invoice {*} due"], "Invoice 12 due", True),
        (["Invoice {*} due"], "Invoice   due", True),  # the middle space is the variable part
        (["Invoice {*} due"], "Invoice due", False),
        (["Invoice {*} due"], "invoice 12 due", False),
        (["A", "B {*}"], "B 1", True),
        (["Код: {*}"], "Код: 1234", True),
    ],
)
def test_text_matches(patterns: list[str], text: str, ok: bool) -> None:
    assert text_matches(patterns, text) is ok


@pytest.mark.parametrize(
    ("address", "allowlist", "ok"),
    [
        ("10.1.2.3", [], True),
        ("10.1.2.3", ["10.0.0.0/8"], True),
        ("10.1.2.3", ["192.0.2.1"], False),
        ("::ffff:10.1.2.3", ["10.0.0.0/8"], True),
        ("2001:db8::5", ["2001:db8::/32"], True),
        ("not an address", ["10.0.0.0/8"], False),
        ("10.1.2.3", ["garbage", "10.1.2.3"], True),
    ],
)
def test_ip_allowed(address: str, allowlist: list[str], ok: bool) -> None:
    assert ip_allowed(address, allowlist) is ok


def test_window_keys_in_the_merchants_zone() -> None:
    instant = datetime(2026, 3, 29, 21, 30, tzinfo=UTC)  # Monday 00:30 in Sofia (UTC+3)
    assert window_keys(instant, "Europe/Sofia") == {
        "day": "d:2026-03-30",
        "week": "w:2026-W14",
        "month": "m:2026-03",
    }
    assert window_keys(instant, "UTC") == {
        "day": "d:2026-03-29",
        "week": "w:2026-W13",
        "month": "m:2026-03",
    }
    # An unknown zone (a row edited by hand) counts in UTC rather than refusing everything.
    assert window_keys(instant, "Mars/Olympus") == window_keys(instant, "UTC")


@settings(deadline=None)  # a shared, loaded machine: time per example is not the property
@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    st.sampled_from(["Europe/Sofia", "America/Santiago", "Pacific/Apia", "UTC", "Asia/Kolkata"]),
)
def test_window_keys_change_only_at_day_boundaries(instant: datetime, zone: str) -> None:
    now = window_keys(instant, zone)
    later = window_keys(instant + timedelta(microseconds=1), zone)
    if later["day"] == now["day"]:
        assert later == now
    if later["week"] != now["week"] or later["month"] != now["month"]:
        assert later["day"] != now["day"]


def test_seed_parameters_utf8_and_windows_1251() -> None:
    assert _decode_pairs(b"text=%D0%97%D0%B4%D1%80%D0%B0%D0%B2%D0%B5%D0%B9&a=1&a=2") == {
        "text": "Здравей",
        "a": "1",
    }
    cp1251 = "text=" + "".join(f"%{b:02X}" for b in "Здравей".encode("cp1251"))
    assert _decode_pairs(cp1251.encode()) == {"text": "Здравей"}
    assert _decode_pairs(b"text=a+b%2Bc&empty=") == {"text": "a b+c", "empty": ""}
