"""Hostile input to check_code.php: whatever the query string and the body hold (repeated and
unknown parameters, huge or negative numbers, bad UTF-8, NUL bytes, broken forms), the answer
is HTTP 200, text/plain, and one of the seven words. The requests are handed to the ASGI
application as raw bytes, so no client library tidies them up first."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from smsgate.services.code_checks import CheckAnswer

WORDS = {answer.value.encode() for answer in CheckAnswer}
PLAIN = b"text/plain; charset=utf-8"

keys = st.one_of(
    st.sampled_from([b"user_id", b"service_id", b"code", b"ip"]),
    st.binary(max_size=12),
)
values = st.one_of(
    st.sampled_from([b"1", b"2", b"102", b"103", b"105", b"201", b"0", b"-1", b" 102 ", b""]),
    st.integers(min_value=-(10**30), max_value=10**30).map(lambda n: str(n).encode()),
    st.binary(max_size=80),
    st.text(max_size=80).map(lambda t: t.encode("utf-8", errors="surrogatepass")),
    st.sampled_from([b"A" * 70, b"\x00", b"%00", b"%ff%fe", b"\xff\xfe", b"%", b"&&&", b"=="]),
)
pair = st.tuples(keys, values, st.booleans())  # the boolean: percent-encode it or send raw


def join(pairs: list[tuple[bytes, bytes, bool]]) -> bytes:
    parts = []
    for key, value, encode in pairs:
        if encode:
            parts.append(quote_from_bytes(key).encode() + b"=" + quote_from_bytes(value).encode())
        else:
            parts.append(key + b"=" + value)
    return b"&".join(parts)


ids = st.sampled_from([b"1", b"2", b"102", b"103", b"104", b"105", b"106", b"201", b"202"])
codes = st.one_of(
    st.text(alphabet="23456789ACDEFGHJKMNPRTUVWXYacdefhjk ", min_size=1, max_size=12),
    st.text(min_size=1, max_size=40),
).map(lambda t: t.encode("utf-8", errors="surrogatepass"))
# Well-formed requests (one of each parameter, plausible ids) with hostile codes and noise: they
# reach the service, the allowlist, the bans and the code lookup.
structured = st.builds(
    lambda owner, code, ip, noise: [
        (b"user_id", owner[0], True),
        (b"service_id", owner[1], True),
        (b"code", code, True),
        *([(b"ip", ip, True)] if ip is not None else []),
        *noise,
    ],
    st.one_of(
        st.sampled_from([(b"1", b"102"), (b"1", b"103"), (b"1", b"105"), (b"1", b"106")]),
        st.tuples(ids, ids),
    ),
    codes,
    st.one_of(st.none(), values),
    st.lists(st.tuples(st.binary(min_size=1, max_size=6), values, st.booleans()), max_size=3),
).map(join)

bodies = st.one_of(
    st.just((b"", b"")),
    st.tuples(st.just(b"application/x-www-form-urlencoded"), st.lists(pair, max_size=8).map(join)),
    st.tuples(
        st.sampled_from(
            [
                b"application/x-www-form-urlencoded",
                b"multipart/form-data; boundary=xx",
                b"multipart/form-data",
                b"application/json",
                b"text/plain",
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
    st.just((b"application/x-www-form-urlencoded", b"code=" + b"A" * 40_000)),
)


async def call(
    app: FastAPI, method: str, query: bytes, content_type: bytes, body: bytes, client: str
) -> tuple[int, dict[bytes, bytes], bytes]:
    headers = [(b"host", b"gw")]
    if content_type:
        headers.append((b"content-type", content_type))
    if body:
        headers.append((b"content-length", str(len(body)).encode()))
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": "/users/check_code.php",
        "raw_path": b"/users/check_code.php",
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": (client, 5000),
        "server": ("gw", 80),
    }
    chunks = [body[i : i + 1000] for i in range(0, len(body), 1000)] or [b""]
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if chunks:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await app(scope, receive, send)
    start = next(m for m in messages if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), content


@pytest.mark.slow
@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    method=st.sampled_from(["GET", "POST"]),
    query=st.one_of(structured, st.lists(pair, max_size=10).map(join), st.binary(max_size=200)),
    body=bodies,
    client=st.sampled_from(["127.0.0.1", "10.9.1.1", "2001:db8::5", "garbage"]),
)
async def test_check_code_php_answers_one_of_seven_words(
    api: FastAPI, method: str, query: bytes, body: tuple[bytes, bytes], client: str
) -> None:
    content_type, payload = body
    status, headers, content = await call(api, method, query, content_type, payload, client)
    assert status == 200
    assert headers[b"content-type"] == PLAIN
    assert content in WORDS
    event(content.decode())


async def test_known_hostile_requests(api: FastAPI) -> None:
    not_found, invalid = b"CODE_NOT_FOUND", b"INVALID_INPUT"
    cases = [
        ("GET", b"user_id=1&service_id=102&code=%ff%fe&ip=%00", b"", b"", not_found),
        ("GET", b"user_id=1&service_id=102&code=\xff\xfe\x00", b"", b"", not_found),
        ("GET", b"user_id=1&service_id=102&code=%00", b"", b"", not_found),
        ("GET", b"user_id=1&user_id=1&service_id=102&code=X", b"", b"", invalid),
        ("GET", b"user_id=99999999999999999999999&service_id=102&code=X", b"", b"", invalid),
        ("GET", b"user_id=1e3&service_id=0x66&code=X", b"", b"", invalid),
        ("POST", b"", b"multipart/form-data; boundary=xx", b"--xx\r\nbroken", invalid),
        ("POST", b"user_id=1", b"application/x-www-form-urlencoded", b"a=&" * 100, invalid),
        ("POST", b"", b"application/x-www-form-urlencoded", b"code=" + b"A" * 40_000, invalid),
    ]
    for method, query, content_type, body, expected in cases:
        status, headers, content = await call(api, method, query, content_type, body, "1.1.1.1")
        assert (status, content) == (200, expected), (query, body[:40])
        assert headers[b"content-type"] == PLAIN
