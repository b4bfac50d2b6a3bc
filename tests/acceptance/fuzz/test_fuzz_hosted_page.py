"""Hostile requests to the hosted access page (``/access/{service_id}``, seed 000): odd
service ids, forms that are broken, repeated, oversized or not forms at all, codes of every
shape. The answer is the HTML page (200, or a 4xx with the page explaining), a 303 to the
service's return URL, or a 4xx problem; never a 5xx."""

from __future__ import annotations

from urllib.parse import quote_from_bytes

import pytest
from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st
from tests.acceptance.fuzz.fuzz_env import Gateway, RawResponse, call_raw

service_ids = st.one_of(
    st.just(b"102"),
    st.just(b"102"),
    st.just(b"102"),
    st.sampled_from([b"102", b"103", b"104", b"201", b"0", b"-1", b"0102", b"1e2", b"%00"]),
    st.integers(min_value=-(10**30), max_value=10**30).map(lambda n: str(n).encode()),
    st.binary(min_size=1, max_size=20).map(lambda b: quote_from_bytes(b, safe="").encode()),
)
codes = st.one_of(
    st.text(alphabet="23456789ACDEFGHJKMNPRTUVWXY", min_size=1, max_size=10),
    st.text(max_size=80),
).map(lambda t: t.encode("utf-8", errors="surrogatepass"))
forms = st.one_of(
    codes.map(lambda c: b"code=" + quote_from_bytes(c).encode()),
    st.lists(codes.map(lambda c: b"code=" + c), min_size=2, max_size=3).map(b"&".join),
    st.binary(max_size=200),
    st.sampled_from([b"", b"code=", b"code=%ff%fe", b"code=" + b"A" * 5000, b"a=&" * 50]),
)
bodies = st.one_of(
    st.tuples(st.just(b"application/x-www-form-urlencoded"), forms),
    st.tuples(
        st.sampled_from([b"", b"multipart/form-data; boundary=x", b"application/json"]),
        st.binary(max_size=100),
    ),
)


async def issued_code(gateway: Gateway) -> str:
    headers = [(name.lower().encode(), value.encode()) for name, value in gateway.merchant.items()]
    response = await call_raw(gateway.app, "GET", b"/api/v1/services/102/codes", headers=headers)
    code: str = response.json()["items"][0]["code"]
    return code


def assert_page(response: RawResponse) -> None:
    assert response.status < 500, response
    if response.status == 303:
        assert response.headers[b"location"].startswith(b"https://shop.example/return?")
    elif response.content_type.startswith(b"application/problem+json"):
        assert 400 <= response.status < 500 and response.json()["status"] == response.status
    else:
        assert response.content_type.startswith(b"text/html"), response


@pytest.mark.slow
@settings(
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)
@given(
    method=st.sampled_from(["GET", "POST"]),
    service_id=service_ids,
    query=st.one_of(st.just(b""), st.binary(max_size=40)),
    body=bodies,
    issued=st.booleans(),
)
async def test_hosted_page_answers_with_a_page_or_a_4xx(
    gateway: Gateway,
    method: str,
    service_id: bytes,
    query: bytes,
    body: tuple[bytes, bytes],
    issued: bool,
) -> None:
    content_type, payload = body
    if issued:  # the code the provisioned MO got, with hostile noise around it
        payload = b"code=" + (await issued_code(gateway)).encode() + b"&" + payload
        content_type = b"application/x-www-form-urlencoded"
    note(f"{method} /access/{service_id!r}?{query!r} {content_type!r} {payload[:200]!r}")
    headers = [(b"content-type", content_type)] if content_type else []
    response = await call_raw(
        gateway.app,
        method,
        b"/access/" + service_id,
        query=query,
        headers=headers,
        body=payload if method == "POST" else b"",
        client="198.51.100.7",
    )
    assert_page(response)
    event(str(response.status))
