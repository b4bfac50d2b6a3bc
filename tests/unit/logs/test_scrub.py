import logging

import pytest

from smsgate.logs import JsonFormatter, ScrubSecrets, scrub


@pytest.mark.parametrize(
    ("line", "leak"),
    [
        ("GET /sys/send.php?login=shop&psw=hunter2&phones=359", "hunter2"),
        ("GET /sys/balance.php?apikey=k-123abc&fmt=3", "k-123abc"),
        ('{"api_key": "k-999", "login": "shop"}', "k-999"),
        ("Authorization: Bearer s3cr3t-token", "s3cr3t-token"),
        ("password=change-me", "change-me"),
        ("signing_secret: whsec_abc", "whsec_abc"),
    ],
)
def test_credentials_never_survive_scrubbing(line: str, leak: str) -> None:
    assert leak not in scrub(line)


def test_harmless_text_is_unchanged() -> None:
    line = "MO 17 from 359888123456 routed to service 102"
    assert scrub(line) == line


def test_filter_rewrites_formatted_records() -> None:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "url %s", ("x?psw=abc",), None)
    assert ScrubSecrets().filter(record)
    assert "abc" not in JsonFormatter().format(record)
