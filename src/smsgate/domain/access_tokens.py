"""The token the hosted access page hands to the merchant's return URL after a valid code.

    token = <payload>.<signature>
    payload   = base64url(JSON {"sid": service id, "cid": code id, "exp": unix seconds}),
                without padding, keys sorted, no spaces
    signature = base64url(HMAC-SHA256(key = the service's signing secret as UTF-8 bytes,
                                      message = payload as ASCII)), without padding

The merchant verifies it with nothing but an HMAC (docs/access_codes.md has the PHP and
Python recipes): recompute the signature over the payload as received, compare in constant
time, then check ``sid`` is its service and ``exp`` is in the future. The token proves that
a code of that service was accepted; it does not stop a replay before ``exp``, so a merchant
that must grant access once per code keeps the ``cid`` values it has honoured.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Final

TOKEN_SECONDS: Final = 600


class InvalidToken(ValueError):
    """Malformed, wrongly signed, of another service, or expired."""


@dataclass(frozen=True, slots=True)
class AccessToken:
    service_id: int
    code_id: int
    expires: int  # unix seconds


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(payload: str, secret: str) -> str:
    digest = hmac.new(secret.encode("utf-8"), payload.encode("ascii"), hashlib.sha256).digest()
    return _b64(digest)


def sign_token(token: AccessToken, secret: str) -> str:
    body = json.dumps(
        {"cid": token.code_id, "exp": token.expires, "sid": token.service_id},
        separators=(",", ":"),
        sort_keys=True,
    )
    payload = _b64(body.encode("ascii"))
    return f"{payload}.{_signature(payload, secret)}"


def verify_token(text: str, secret: str, *, service_id: int, now: int) -> AccessToken:
    """The token's content if it is ours, for ``service_id``, and not expired at ``now``."""
    payload, dot, signature = text.partition(".")
    if not dot or not payload.isascii() or not signature.isascii():
        raise InvalidToken("not a token")
    if not hmac.compare_digest(signature, _signature(payload, secret)):
        raise InvalidToken("bad signature")
    try:
        data = json.loads(_unb64(payload))
        token = AccessToken(int(data["sid"]), int(data["cid"]), int(data["exp"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidToken("unreadable payload") from exc
    if token.service_id != service_id:
        raise InvalidToken("token of another service")
    if now >= token.expires:
        raise InvalidToken("expired")
    return token
