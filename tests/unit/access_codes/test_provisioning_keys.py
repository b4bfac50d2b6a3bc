"""Provisioning of an access-code service: its reply must fit in max_replies_per_mo SMS."""

from __future__ import annotations

from typing import Any

import pytest

from smsgate.domain.provisioning import ConfigError, parse_document


def document(**service: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": 102,
        "merchant": 1,
        "type": "access_code",
        "keyword": "KOD",
        "short_numbers": ["1851"],
    }
    entry.update(service)
    return {"services": [entry]}


def issues(**service: Any) -> list[str]:
    try:
        parse_document(document(**service), source="shop.toml")
    except ConfigError as exc:
        return exc.lines()
    return []


def test_a_short_template_fits() -> None:
    assert issues(reply_template="Your code: {code}, valid until {valid_until}") == []


def test_a_template_that_needs_two_sms_is_refused_unless_allowed() -> None:
    long = "Thank you for your payment. " * 5 + "Code: {code}"  # 140 + 14 + 32 > 160
    assert issues(reply_template=long, code_length=32) == [
        "shop.toml: services[0] (id=102): reply_template: "
        "the reply can need 2 SMS parts, at most 1 allowed"
    ]
    assert issues(reply_template=long, code_length=32, max_replies_per_mo=2) == []


def test_the_worst_case_counts_the_longest_code() -> None:
    template = "x" * 150 + "{code}"
    assert issues(reply_template=template, code_length=10) == []
    assert len(issues(reply_template=template, code_length=11)) == 1


def test_a_unicode_template_has_less_room() -> None:
    template = "Вашият код: {code}. " + "Благодарим! " * 5  # UCS-2: 70 characters per SMS
    assert len(issues(reply_template=template)) == 1
    assert issues(reply_template=template, max_replies_per_mo=2) == []


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("Code {code} {nope}", "unknown placeholder {nope}"),
        ("Code {code} {", "never closed"),
        ("Code }{code}", "no opening brace"),
    ],
)
def test_broken_templates(template: str, message: str) -> None:
    (line,) = issues(reply_template=template)
    assert "reply_template" in line and message in line


def test_ban_and_lifetime_keys() -> None:
    assert issues(ban_after_failures=3, ban_window_seconds=60, ban_seconds=600) == []
    assert issues(lifetime_seconds=86400, code_kind="period_from_first_use") == []
    assert len(issues(ban_seconds=0)) == 1
    assert issues(return_url="https://shop.example/paid") == []
    assert len(issues(return_url="javascript:alert(1)")) == 1
