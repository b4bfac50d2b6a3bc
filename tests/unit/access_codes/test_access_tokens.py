"""The hosted page's token: what the merchant verifies with a plain HMAC."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from smsgate.domain.access_tokens import AccessToken, InvalidToken, sign_token, verify_token

SECRET = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"


def test_a_token_round_trips() -> None:
    text = sign_token(AccessToken(102, 17, 2_000_000_000), SECRET)
    assert verify_token(text, SECRET, service_id=102, now=1_999_999_999) == AccessToken(
        102, 17, 2_000_000_000
    )


def test_the_documented_recipe_verifies_it() -> None:
    # docs/access_codes.md, "Verifying the token" (Python).
    text = sign_token(AccessToken(102, 17, 2_000_000_000), SECRET)
    payload, signature = text.split(".")
    expected = (
        base64.urlsafe_b64encode(
            hmac.new(SECRET.encode(), payload.encode(), hashlib.sha256).digest()
        )
        .rstrip(b"=")
        .decode()
    )
    assert hmac.compare_digest(signature, expected)
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert data == {"sid": 102, "cid": 17, "exp": 2_000_000_000}


@pytest.mark.parametrize(
    ("mangle", "service_id", "now", "reason"),
    [
        (lambda t: t, 102, 2_000_000_000, "expired"),
        (lambda t: t, 103, 1, "another service"),
        (lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"), 102, 1, "signature"),
        (lambda t: "x" + t, 102, 1, "signature"),
        (lambda t: t.replace(".", ""), 102, 1, "not a token"),
        (lambda t: "é." + t.split(".")[1], 102, 1, "not a token"),
    ],
)
def test_bad_tokens_are_refused(mangle: object, service_id: int, now: int, reason: str) -> None:
    text = sign_token(AccessToken(102, 17, 2_000_000_000), SECRET)
    assert callable(mangle)
    with pytest.raises(InvalidToken, match=reason):
        verify_token(mangle(text), SECRET, service_id=service_id, now=now)


def test_another_secret_does_not_verify() -> None:
    text = sign_token(AccessToken(102, 17, 2_000_000_000), SECRET)
    with pytest.raises(InvalidToken, match="signature"):
        verify_token(text, SECRET + "x", service_id=102, now=1)


def test_a_signed_but_unreadable_payload_is_refused() -> None:
    payload = base64.urlsafe_b64encode(b'{"sid": "x"}').rstrip(b"=").decode()
    signature = (
        base64.urlsafe_b64encode(
            hmac.new(SECRET.encode(), payload.encode(), hashlib.sha256).digest()
        )
        .rstrip(b"=")
        .decode()
    )
    with pytest.raises(InvalidToken, match="unreadable"):
        verify_token(f"{payload}.{signature}", SECRET, service_id=102, now=1)
