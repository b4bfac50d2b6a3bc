"""Hostile pushes to the operator HTTP intake (``/operators/{id}/mo|dlr|calls``): wrong and
missing content types, bodies that are not JSON or not UTF-8, JSON nesting bombs, huge
numbers and strings, NUL and lone surrogates, broken forms, oversized bodies, wrong secrets.
The answer is 200 with the intake's JSON, or a 4xx problem (``application/problem+json``
whose ``status`` is the HTTP status); never a 5xx."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st
from tests.acceptance.fuzz.fuzz_env import INTAKE_SECRET, Gateway, RawResponse, call_raw

KINDS = ("mo", "dlr", "calls")
FIELDS = {
    "mo": ("message_id", "msisdn", "short_number", "text"),
    "dlr": ("message_id", "status", "error_code"),
    "calls": ("call_id", "from", "to"),
}
GOOD = {
    "mo": {"message_id": "m-1", "msisdn": "359888123456", "short_number": "1851", "text": "KOD"},
    "dlr": {"message_id": "m-1", "status": "DELIVRD", "error_code": "000"},
    "calls": {"call_id": "c-1", "from": "359888123456", "to": "1092"},
}

strings = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            "\x00",
            "a\x00b",
            "\ud800",
            "\udfff\ud800",
            "KOD",
            "kod 42",
            "DELIVRD",
            "UNDELIV",
            "1851",
            "1092",
            "359888123456",
            "+359888123456",
            "m-1",
            "x" * 200,
            "x" * 3000,
            "😀" * 100,
        ]
    ),
)
json_values: st.SearchStrategy[Any] = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**30), max_value=10**30),
        st.floats(allow_nan=True, allow_infinity=True),
        strings,
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(strings, children, max_size=3)
    ),
    max_leaves=10,
)


def documents(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with the kind's fields (each present or not, a plausible or hostile value)."""
    fields = {
        name: st.one_of(st.just(GOOD[kind][name]), strings, json_values) for name in FIELDS[kind]
    }
    return st.fixed_dictionaries({}, optional=fields).flatmap(
        lambda doc: st.dictionaries(strings, json_values, max_size=2).map(lambda x: {**x, **doc})
    )


def dumps(value: Any) -> bytes:
    # allow_nan: NaN and Infinity are what a sloppy encoder sends; surrogatepass: so is a
    # lone surrogate in a \\u escape.
    return json.dumps(value, allow_nan=True).encode("utf-8", errors="surrogatepass")


def form(value: dict[str, Any]) -> bytes:
    pairs = {str(k): str(v) for k, v in value.items()}
    return urlencode(pairs, encoding="utf-8", errors="surrogatepass").encode()


def bomb(depth: int, opener: bytes, closer: bytes) -> bytes:
    return opener * depth + closer * depth


def bodies(kind: str) -> st.SearchStrategy[tuple[bytes, bytes]]:
    json_types = st.sampled_from(
        [b"application/json", b"application/json; charset=utf-8", b"Application/JSON"]
    )
    form_types = st.just(b"application/x-www-form-urlencoded")
    return st.one_of(
        st.tuples(json_types, documents(kind).map(dumps)),
        st.tuples(form_types, documents(kind).map(form)),
        st.tuples(json_types, json_values.map(dumps)),
        st.tuples(
            st.sampled_from(
                [
                    b"",
                    b"application/json",
                    b"application/x-www-form-urlencoded",
                    b"multipart/form-data; boundary=xx",
                    b"multipart/form-data",
                    b"text/plain",
                    b"application/xml",
                    b"\xff\xfe",
                ]
            ),
            st.binary(max_size=200),
        ),
        st.tuples(
            json_types,
            st.sampled_from(
                [
                    b"",
                    b"null",
                    b"[]",
                    b"{",
                    b'{"message_id": "m-1",}',
                    b'{"message_id": "\xff\xfe"}',
                    b'\xef\xbb\xbf{"message_id": "m-1"}',
                    b'{"text": "\\ud800"}',
                    b'{"message_id": "\\u0000"}',
                    b'{"message_id": 1e999999}',
                    b'{"message_id": ' + b"9" * 5000 + b"}",
                    b'{"a": ' + bomb(100_000, b"[", b"]") + b"}",
                    bomb(100_000, b"[", b"]"),
                    bomb(50_000, b'{"a":', b"}"),
                    b'{"message_id": "' + b"x" * 20_000 + b'"}',
                    b" " * 20_000,
                ]
            ),
        ),
        st.tuples(
            form_types,
            st.sampled_from(
                [
                    b"message_id=%ff%fe&msisdn=%00",
                    b"message_id=m&message_id=n",
                    b"=&=&%",
                    b"text=" + b"A" * 20_000,
                    b"a=&" * 5_000,
                ]
            ),
        ),
        st.just((b"multipart/form-data; boundary=xx", b"--xx\r\nContent-Disposition: form")),
    )


def secrets() -> st.SearchStrategy[list[tuple[bytes, bytes]]]:
    right = INTAKE_SECRET.encode()
    return st.sampled_from(
        [
            [(b"authorization", b"Bearer " + right)],
            [(b"x-operator-secret", right)],
            [(b"authorization", b"bearer   " + right + b"  ")],
            [(b"authorization", b"Bearer " + right)],
            [],
            [(b"authorization", b"Bearer")],
            [(b"authorization", b"Basic " + right)],
            [(b"x-operator-secret", b"wrong")],
            [(b"x-operator-secret", b"\xff" * 300)],
            [(b"x-operator-secret", right + b"\x00")],
        ]
    )


operators = st.sampled_from([b"sim-bg", b"push-bg", b"nobody", b"%00", b"%ff", b"a" * 300])


def assert_answer(response: RawResponse) -> None:
    assert response.status < 500, response
    if response.status == 200:
        assert response.content_type == b"application/json", response
        body = response.json()
        assert body["status"] == "accepted" and isinstance(body["id"], int), body
        return
    assert 400 <= response.status < 500, response
    assert response.content_type == b"application/problem+json", response
    problem = response.json()
    assert problem["status"] == response.status and problem["title"], problem


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
@settings(
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)
@given(data=st.data())
async def test_intake_answers_any_push_with_200_or_a_problem(
    gateway: Gateway, kind: str, data: st.DataObject
) -> None:
    operator = data.draw(operators, label="operator")
    content_type, body = data.draw(bodies(kind), label="body")
    headers = data.draw(secrets(), label="secret")
    if content_type:
        headers = [*headers, (b"content-type", content_type)]
    note(f"POST /operators/{operator!r}/{kind} {headers!r} {body[:300]!r}")
    response = await call_raw(
        gateway.app,
        "POST",
        b"/operators/" + operator + b"/" + kind.encode(),
        headers=headers,
        body=body,
    )
    assert_answer(response)
    event(str(response.status))


@pytest.mark.parametrize("kind", KINDS)
async def test_oversized_and_nested_bodies_are_refused(gateway: Gateway, kind: str) -> None:
    auth = [(b"authorization", b"Bearer " + INTAKE_SECRET.encode())]
    path = b"/operators/sim-bg/" + kind.encode()
    json_type = [(b"content-type", b"application/json")]
    form_type = [(b"content-type", b"application/x-www-form-urlencoded")]
    cases = [
        (json_type, b'{"a": "' + b"x" * 10_000_000 + b'"}', 413),
        (form_type, b"a=" + b"x" * 10_000_000, 413),
        (json_type, bomb(8_000, b"[", b"]"), 400),
        (json_type, b'{"a": ' + bomb(2_500, b'{"a":', b"}") + b"}", 400),
        (json_type, b'{"message_id": "\\ud800"}', 400),
        (json_type, b'{"message_id": "a\\u0000"}', 400),
        (json_type, b"\xff\xfe{}", 400),
        (json_type, b"{", 400),
        (json_type, b"[]", 422),
        ([(b"content-type", b"text/plain")], b"message_id=1", 415),
        ([], b"", 415),
        ([(b"content-type", b"multipart/form-data; boundary=xx")], b"--xx\r\nbroken", 422),
    ]
    for headers, body, status in cases:
        response = await call_raw(gateway.app, "POST", path, headers=auth + headers, body=body)
        assert_answer(response)
        assert response.status == status, (body[:40], response)
    # A declared length beyond the limit is refused before the body is read.
    response = await call_raw(
        gateway.app,
        "POST",
        path,
        headers=[*auth, *json_type, (b"content-length", b"999999999999")],
        body=b"{}",
    )
    assert response.status == 413, response
