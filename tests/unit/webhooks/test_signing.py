"""The ``sign`` field and signing keys (domain/signing.py), against independent readings of
docs/webhooks.md and against the standardwebhooks package."""

from __future__ import annotations

import base64
import hashlib
import hmac
import string
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook

from smsgate.domain.signing import (
    canonical_fields,
    form_signature,
    new_signing_secret,
    signed_fields,
    signing_key,
    verify_form_signature,
)

_UNRESERVED = set(string.ascii_letters + string.digits + "-._~")


def _rfc3986(text: str) -> str:
    return "".join(
        char if char in _UNRESERVED else "".join(f"%{byte:02X}" for byte in char.encode())
        for char in text
    )


def test_canonical_string_of_a_known_example() -> None:
    fields = {"text": "a b&c=d", "id": "42", "sign": "ignored", "event_type": "message.dlr"}
    assert canonical_fields(fields) == "event_type=message.dlr&id=42&text=a%20b%26c%3Dd"


def test_known_signature() -> None:
    # hash_hmac('sha256', 'a=1&b=%D0%AF', 'key') in PHP gives the same hex.
    expected = hmac.new(b"key", b"a=1&b=%D0%AF", hashlib.sha256).hexdigest()
    assert form_signature({"b": "Я", "a": "1"}, b"key") == expected


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=12).filter(lambda k: k != "sign"),
        st.text(max_size=40),
        max_size=8,
    ),
    st.binary(min_size=1, max_size=40),
)
def test_sign_matches_an_independent_implementation(fields: dict[str, str], key: bytes) -> None:
    base = "&".join(
        f"{_rfc3986(k)}={_rfc3986(v)}"
        for k, v in sorted(fields.items(), key=lambda kv: kv[0].encode())
    )
    signed = signed_fields(fields, key)
    assert signed["sign"] == hmac.new(key, base.encode(), hashlib.sha256).hexdigest()
    assert verify_form_signature(signed, key)


def test_a_value_cannot_pass_for_extra_fields() -> None:
    key = b"k"
    honest = {"msisdn": "359888", "text": "hi&paid=1"}
    forged = {"msisdn": "359888", "text": "hi", "paid": "1"}
    assert form_signature(honest, key) != form_signature(forged, key)


def test_tampering_and_a_wrong_key_are_detected() -> None:
    signed = signed_fields({"a": "1"}, b"k1")
    assert verify_form_signature(signed, b"k1")
    assert not verify_form_signature(signed, b"k2")
    assert not verify_form_signature({**signed, "a": "2"}, b"k1")
    assert not verify_form_signature({"a": "1"}, b"k1")  # no sign at all


def test_whsec_secrets_decode_like_standard_webhooks_and_others_are_utf8() -> None:
    secret = new_signing_secret(bytes(range(24)))
    assert secret == "whsec_" + base64.b64encode(bytes(range(24))).decode()
    assert signing_key(secret) == bytes(range(24))
    when = datetime(2026, 5, 1, tzinfo=UTC)
    ours = Webhook(signing_key(secret)).sign("evt_1", when, "a=1")
    assert ours == Webhook(secret).sign("evt_1", when, "a=1")
    assert signing_key("plain secret") == b"plain secret"
    assert len(signing_key(new_signing_secret())) == 24
    assert new_signing_secret() != new_signing_secret()


@pytest.mark.parametrize("bad", ["", "whsec_", "whsec_not base64!"])
def test_unusable_secrets_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        signing_key(bad)
