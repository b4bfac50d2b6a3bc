"""Reading an access-code service's settings; the allowlist; check_code.php's parameters."""

from __future__ import annotations

from datetime import timedelta

import pytest

from smsgate.api.access_codes import BadInput, parse_id
from smsgate.api.hosted import with_token
from smsgate.domain.access_codes import CodeAlphabet, CodeKind
from smsgate.services.access_code_settings import Allowlist, MisconfiguredService, read_config
from smsgate.services.code_checks import printable


def test_defaults() -> None:
    config = read_config({})
    assert config.rules.kind is CodeKind.USES and config.rules.uses == 1
    assert config.rules.length == 8 and config.rules.alphabet is CodeAlphabet.ALNUM
    assert config.rules.lifetime == timedelta(hours=1)  # validity_seconds applies to uses too
    assert (config.bans.after_failures, config.bans.window_seconds, config.bans.ban_seconds) == (
        10,
        600,
        3600,
    )
    assert config.max_replies_per_mo == 1 and config.return_url is None


def test_a_uses_code_without_validity_lives_until_its_lifetime_or_forever() -> None:
    assert read_config({"validity_seconds": 0}).rules.lifetime is None
    forever_but = read_config({"validity_seconds": 0, "lifetime_seconds": 60})
    assert forever_but.rules.lifetime == timedelta(seconds=60)
    earlier = read_config({"validity_seconds": 3600, "lifetime_seconds": 60})
    assert earlier.rules.lifetime == timedelta(seconds=60)


def test_period_kinds_keep_validity_and_lifetime_apart() -> None:
    config = read_config(
        {"code_kind": "period_from_first_use", "validity_seconds": 600, "lifetime_seconds": 86400}
    )
    assert config.rules.validity == timedelta(minutes=10)
    assert config.rules.lifetime == timedelta(days=1)


@pytest.mark.parametrize(
    "stored",
    [
        {"code_kind": "forever"},
        {"alphabet": "emoji"},
        {"code_length": 2},
        {"code_kind": "period_from_issue", "validity_seconds": 0},
        {"ban_window_seconds": 0},
        {"uses": "many"},
    ],
)
def test_unusable_settings(stored: dict[str, object]) -> None:
    with pytest.raises(MisconfiguredService):
        read_config(stored)


def test_allowlist() -> None:
    anyone = Allowlist.parse([])
    assert anyone.allows("203.0.113.1") and anyone.allows("garbage")
    servers = Allowlist.parse(["10.9.0.0/16", "2001:db8::/32", "not a network"])
    assert servers.allows("10.9.200.1") and servers.allows("::ffff:10.9.0.1")
    assert servers.allows("2001:db8:1::5")
    assert not servers.allows("10.8.0.1") and not servers.allows("garbage")
    assert not Allowlist.parse(["not a network"]).allows("10.0.0.1")


@pytest.mark.parametrize(("text", "value"), [("1", 1), (" 102 ", 102), ("9" * 18, 10**18 - 1)])
def test_ids(text: str, value: int) -> None:
    assert parse_id(text) == value


@pytest.mark.parametrize(
    "text", [None, "", "0", "000", "-1", "+1", "1.0", "1e3", "0x10", "9" * 19, "١٢", "1 2"]
)
def test_bad_ids(text: str | None) -> None:
    with pytest.raises(BadInput):
        parse_id(text)


def test_printable_drops_control_characters() -> None:
    assert printable("ab\x00c\nd\u200be", 64) == "abcde"
    assert printable("x" * 100, 64) == "x" * 64


def test_with_token_keeps_the_return_urls_query() -> None:
    assert with_token("https://s.example/p?a=1&token=old", "T.S") == (
        "https://s.example/p?a=1&token=T.S"
    )
    assert with_token("https://s.example/p", "T.S") == "https://s.example/p?token=T.S"
