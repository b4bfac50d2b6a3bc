"""The signed request of one attempt (worker/webhook_sender.build_request), without network."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook

from smsgate.domain.signing import (
    form_signature,
    new_signing_secret,
    signing_key,
    verify_form_signature,
)
from smsgate.domain.url_safety import UnsafeUrlError
from smsgate.services.webhooks import Delivery, new_event_id
from smsgate.worker.webhook_sender import _form_encode, _form_signature, build_request

SECRET = new_signing_secret(b"\x01" * 24)


def _delivery(url: str = "https://shop.example/dlr.php", method: str = "POST") -> Delivery:
    event_id = new_event_id(b"\x00" * 15)
    return Delivery(
        event_id=event_id,
        event_type="payment.result",
        merchant_id=1,
        service_id=201,
        url=url,
        method=method,
        fields={
            "subscription_id": "7",
            "text": "a b+c",
            "event_id": event_id,
            "event_type": "payment.result",
        },
        status="pending",
        signing_secret=SECRET,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_event_ids_are_evt_and_24_base32_characters() -> None:
    assert new_event_id(b"\x00" * 15) == "evt_" + "a" * 24
    ids = {new_event_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) == 28 and i[4:].isalnum() and i[4:].islower() for i in ids)


def test_post_is_a_signed_form() -> None:
    now = datetime.now(UTC)
    request = build_request(_delivery(), now)
    body = request.content.decode()
    assert request.method == "POST"
    assert str(request.url) == "https://shop.example/dlr.php"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["webhook-id"] == "evt_" + "a" * 24
    assert request.headers["webhook-timestamp"] == str(int(now.timestamp()))
    fields = dict(parse_qsl(body, strict_parsing=True))
    assert fields["text"] == "a b+c"
    assert list(fields)[-1] == "sign"
    assert verify_form_signature(fields, signing_key(SECRET))
    Webhook(SECRET).verify(body, dict(request.headers), json_parse=False)


def test_get_signs_the_whole_query_string() -> None:
    request = build_request(
        _delivery("https://shop.example/cb?a=1&b=x%20y#top", "GET"), datetime.now(UTC)
    )
    assert request.method == "GET"
    assert request.content == b""
    query = request.url.query.decode()
    assert query.startswith("a=1&b=x%20y&subscription_id=7&")
    assert request.url.fragment == ""
    Webhook(SECRET).verify(query, dict(request.headers), json_parse=False)
    fields = dict(parse_qsl(query))
    assert fields["b"] == "x y"
    assert verify_form_signature(fields, signing_key(SECRET))  # a and b are covered too


@pytest.mark.parametrize(
    ("url", "method", "error"),
    [
        ("ftp://shop.example/x", "POST", UnsafeUrlError),
        ("https://shop.example/x", "PUT", ValueError),
    ],
)
def test_unsendable_deliveries(url: str, method: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        build_request(_delivery(url, method), datetime.now(UTC))


def test_no_secret_no_request() -> None:
    delivery = _delivery()
    unsigned = Delivery(**{**delivery.__dict__, "signing_secret": None})
    with pytest.raises(ValueError, match="no signing secret"):
        build_request(unsigned, datetime.now(UTC))


_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=20) | st.sampled_from(
    ["", "id", "a b", "x&y=z", "~._-", "+", "%41", "Здравей"]
)


@given(st.dictionaries(_TEXT, _TEXT, max_size=8), st.binary(min_size=1, max_size=32))
def test_the_senders_sign_and_form_encoding_equal_the_reference_ones(
    fields: dict[str, str], key: bytes
) -> None:
    assert _form_signature(fields, key) == form_signature(fields, key)
    assert _form_encode(fields) == urlencode(fields)
