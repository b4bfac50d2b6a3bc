"""send_bulk.php reads its parameters as urllib's parse_qsl would (first occurrence wins;
percent-escapes UTF-8, or windows-1251 when they are not UTF-8), without its cost."""

from __future__ import annotations

from urllib.parse import parse_qsl

from hypothesis import given, settings
from hypothesis import strategies as st

from smsgate.api.bulk import _decode_pairs


def reference(raw: bytes) -> dict[str, str]:
    text = raw.decode("latin-1")
    try:
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        pairs = parse_qsl(text, keep_blank_values=True, encoding="cp1251", errors="replace")
    params: dict[str, str] = {}
    for key, value in pairs:
        params.setdefault(key, value)
    return params


pieces = st.sampled_from(
    [b"a", b"text", b"user_id", b"=", b"&", b"+", b"%", b"%2", b"%41", b"%zz", b"%ff",
     b"%D0%9F", b"%CF", b"\xff", b"\xd0\x9f", b" ", b";", b"1"]
)  # fmt: skip


@settings(max_examples=2000, derandomize=True, database=None)
@given(st.lists(pieces, max_size=16).map(b"".join))
def test_parameters_are_read_as_parse_qsl_reads_them(raw: bytes) -> None:
    assert _decode_pairs(raw) == reference(raw)


def test_windows_1251_when_an_escape_is_not_utf8() -> None:
    assert _decode_pairs(b"text=%CF%F0%E8&msisdn=1") == {"text": "При", "msisdn": "1"}
    assert _decode_pairs(b"text=a+b%20c&text=second") == {"text": "a b c"}
