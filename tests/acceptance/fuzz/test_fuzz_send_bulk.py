"""Hostile input to send_bulk.php (seed 001): whatever the query string and the body hold
(repeated and unknown parameters, huge or non-numeric ids, bad UTF-8 and percent-escapes, NUL
bytes, huge texts, broken forms, any content type), the answer is HTTP 200, text/plain, and
exactly one of the seed's words (``MSG_OK:<id>`` with ``extended=yes``). The requests reach
the application as raw bytes, and part of them carry a real merchant and bulk service, so the
checks behind the input parsing (allowlist, patterns, quotas, numbers) run too."""

from __future__ import annotations

import re
from urllib.parse import quote_from_bytes

import pytest
from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st
from tests.acceptance.fuzz.fuzz_env import SEND_BULK_WORDS, Gateway, RawResponse, call_raw

PATH = b"/users/send_bulk.php"
ANSWER = re.compile(rb"(?:%s)|MSG_OK:[0-9]+" % b"|".join(w.encode() for w in SEND_BULK_WORDS))

names = st.one_of(
    st.sampled_from([b"user_id", b"service_id", b"msisdn", b"text", b"extended"]),
    st.binary(max_size=12),
)
hostile = st.sampled_from(
    [
        b"",
        b"\x00",
        b"%00",
        b"%ff%fe",
        b"\xff\xfe",
        b"%",
        b"%%",
        b"%zz",
        b"&&&",
        b"==",
        b"+",
        b"%E2%82",  # a UTF-8 sequence cut short
        b"%C0%AF",  # an overlong encoding
        b"%ED%A0%80",  # a UTF-16 surrogate in UTF-8
        b"%D0%9F%D1%80%D0%B8",  # Cyrillic in UTF-8
        b"%CF%F0%E8",  # Cyrillic in windows-1251
        b"A" * 50_000,
        b"%41" * 20_000,
        "😀".encode() * 200,
    ]
)
values = st.one_of(
    hostile,
    st.sampled_from([b"1", b"2", b"201", b"202", b"301", b"102", b"0", b"-1", b" 201 ", b"yes"]),
    st.integers(min_value=-(10**40), max_value=10**40).map(lambda n: str(n).encode()),
    st.sampled_from([b"1e3", b"0x10", b"\xd9\xa1", b"\xef\xbc\x91", b"1.0", b"+1", b"NaN"]),
    st.binary(max_size=60),
    st.text(max_size=60).map(lambda t: t.encode("utf-8", errors="surrogatepass")),
)
pair = st.tuples(names, values, st.booleans())  # the boolean: percent-encode, or send raw


def join(pairs: list[tuple[bytes, bytes, bool]]) -> bytes:
    parts = []
    for key, value, encode in pairs:
        if encode:
            parts.append(quote_from_bytes(key).encode() + b"=" + quote_from_bytes(value).encode())
        else:
            parts.append(key + b"=" + value)
    return b"&".join(parts)


msisdns = st.one_of(
    st.sampled_from(
        [b"359888123456", b"+359888123456", b"00359888123456", b"0888123456", b"447700900123"]
    ),
    st.from_regex(rb"\A\+?[0-9 ()-]{1,25}\Z"),
    values,
)
texts = st.one_of(
    st.sampled_from([b"Your order 42 is ready", b"Hello", "Здравей".encode()]),
    st.text(max_size=400).map(lambda t: t.encode("utf-8", errors="surrogatepass")),
    values,
)
# Well-formed requests for real services, with hostile numbers and texts and noise: these get
# past the parsing into the service, allowlist, pattern, quota and charging checks.
structured = st.builds(
    lambda owner, msisdn, text, extended, noise: [
        (b"user_id", owner[0], True),
        (b"service_id", owner[1], True),
        (b"msisdn", msisdn, True),
        (b"text", text, True),
        *([(b"extended", extended, True)] if extended is not None else []),
        *noise,
    ],
    st.sampled_from([(b"1", b"201"), (b"1", b"202"), (b"2", b"301"), (b"1", b"301")]),
    msisdns,
    texts,
    st.one_of(st.none(), st.sampled_from([b"yes", b"YES", b" yes", b"no"]), values),
    st.lists(pair, max_size=3),
).map(join)
queries = st.one_of(structured, st.lists(pair, max_size=10).map(join), st.binary(max_size=300))
bodies = st.one_of(
    st.just((b"", b"")),
    st.tuples(st.just(b"application/x-www-form-urlencoded"), structured),
    st.tuples(st.just(b"application/x-www-form-urlencoded"), st.lists(pair, max_size=8).map(join)),
    st.tuples(
        st.sampled_from(
            [
                b"application/x-www-form-urlencoded",
                b"application/x-www-form-urlencoded; charset=windows-1251",
                b"application/json",
                b"text/plain",
                b"\xff\xfe/\x00",
            ]
        ),
        st.binary(max_size=300),
    ),
    st.builds(
        lambda fields: (
            b"multipart/form-data; boundary=xx",
            b"".join(
                b'--xx\r\nContent-Disposition: form-data; name="' + k + b'"\r\n\r\n' + v + b"\r\n"
                for k, v, _ in fields
            )
            + b"--xx--\r\n",
        ),
        st.lists(pair, max_size=5),
    ),
    st.just((b"application/x-www-form-urlencoded", b"text=" + b"A" * 3_000_000)),
    st.just((b"application/x-www-form-urlencoded", b"a=&" * 20_000)),
)
clients = st.sampled_from(["127.0.0.1", "10.9.1.1", "2001:db8::5", "garbage", ""])


def assert_word(response: RawResponse) -> None:
    assert response.status == 200, response
    assert response.content_type.startswith(b"text/plain"), response
    assert ANSWER.fullmatch(response.body), response.body[:200]


@pytest.mark.slow
@settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)
@given(
    method=st.sampled_from(["GET", "POST"]),
    query=queries,
    body=bodies,
    client=clients,
)
async def test_send_bulk_php_answers_one_word(
    gateway: Gateway, method: str, query: bytes, body: tuple[bytes, bytes], client: str
) -> None:
    content_type, payload = body
    note(f"{method} ?{query[:300]!r} {content_type!r} {payload[:300]!r} from {client!r}")
    headers = [(b"content-type", content_type)] if content_type else []
    response = await call_raw(
        gateway.app, method, PATH, query=query, headers=headers, body=payload, client=client
    )
    assert_word(response)
    event(response.body.split(b":")[0].decode())


MALFORMED_MULTIPART = [
    (b"multipart/form-data; boundary=", b"\x98"),
    (b"multipart/form-data", b"user_id=1"),
    (b"multipart/form-data; boundary=xx", b"--xx\r\n\r\n--xx--"),
]


@pytest.mark.parametrize(("content_type", "body"), MALFORMED_MULTIPART)
async def test_malformed_multipart_is_invalid_input(
    gateway: Gateway, content_type: bytes, body: bytes
) -> None:
    response = await call_raw(
        gateway.app, "POST", PATH, headers=[(b"content-type", content_type)], body=body
    )
    assert_word(response)
    assert response.body == b"INVALID_INPUT"


async def test_known_hostile_requests(gateway: Gateway) -> None:
    ok = b"user_id=1&service_id=201&msisdn=359888123456&text=Hi"
    cases: list[tuple[str, bytes, bytes, bytes, bytes]] = [
        ("GET", ok, b"", b"", b"MSG_OK"),
        ("GET", ok + b"&extended=yes", b"", b"", b"MSG_OK:"),
        ("GET", ok.replace(b"Hi", b"%ff%fe"), b"", b"", b"MSG_OK"),
        ("GET", ok.replace(b"Hi", b"H%00i"), b"", b"", b"INVALID_INPUT"),
        ("GET", ok + b"&\xff\xfe=\x80", b"", b"", b"MSG_OK"),
        ("GET", ok.replace(b"user_id=1", b"user_id=" + b"9" * 30), b"", b"", b"INVALID_INPUT"),
        ("GET", ok.replace(b"user_id=1", b"user_id=1e3"), b"", b"", b"INVALID_INPUT"),
        ("GET", ok.replace(b"user_id=1", b"user_id=%D9%A1"), b"", b"", b"INVALID_INPUT"),
        ("GET", ok.replace(b"359888123456", b"abc"), b"", b"", b"INVALID_MSISDN"),
        ("GET", ok.replace(b"text=Hi", b"text="), b"", b"", b"INVALID_INPUT"),
        ("GET", ok.replace(b"text=Hi", b"text=" + b"A" * 50_000), b"", b"", b"INVALID_INPUT"),
        ("POST", b"", b"multipart/form-data; boundary=xx", b"--xx\r\nbroken", b"INVALID_INPUT"),
        ("POST", b"", b"application/x-www-form-urlencoded", ok, b"MSG_OK"),
        ("POST", b"", b"application/json", b'{"user_id": 1}', b"INVALID_INPUT"),
    ]
    for method, query, content_type, body, expected in cases:
        headers = [(b"content-type", content_type)] if content_type else []
        response = await call_raw(
            gateway.app, method, PATH, query=query, headers=headers, body=body, client="127.0.0.9"
        )
        assert_word(response)
        assert response.body.startswith(expected), (query[:80], body[:80], response.body)
