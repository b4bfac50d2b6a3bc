"""Signing merchant callbacks: the signing secret, its key, and the ``sign`` field.

Every callback carries two signatures made with the same key (docs/webhooks.md):

- the Standard Webhooks headers (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``),
  made by the ``standardwebhooks`` package in the sender;
- a ``sign`` field among the form fields, which a plain PHP script can check with
  ``hash_hmac`` and ``http_build_query`` (defined here).

The key: a secret of the form ``whsec_<base64>`` (what ``new_signing_secret`` makes, and what
Standard Webhooks libraries expect) is the bytes the base64 decodes to; any other secret is
used as its UTF-8 bytes, so a hand-written secret also works.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from urllib.parse import quote

SECRET_PREFIX = "whsec_"  # noqa: S105 (a format marker, not a secret)
SIGN_FIELD = "sign"


def new_signing_secret(random_bytes: bytes | None = None) -> str:
    """A fresh secret: ``whsec_`` and the base64 of 24 random bytes (192 bits)."""
    raw = secrets.token_bytes(24) if random_bytes is None else random_bytes
    if len(raw) < 16:
        raise ValueError("a signing secret needs at least 16 random bytes")
    return SECRET_PREFIX + base64.b64encode(raw).decode("ascii")


def signing_key(secret: str) -> bytes:
    """The HMAC key a secret stands for (see the module docstring)."""
    if not secret:
        raise ValueError("empty signing secret")
    if secret.startswith(SECRET_PREFIX):
        try:
            key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except binascii.Error as exc:
            raise ValueError("a whsec_ secret must be base64") from exc
        if not key:
            raise ValueError("empty signing secret")
        return key
    return secret.encode("utf-8")


def canonical_fields(fields: Mapping[str, str]) -> str:
    """What ``sign`` covers: every field but ``sign``, sorted by name (byte order), each name
    and value percent-encoded as RFC 3986 says (only ``A-Z a-z 0-9 - . _ ~`` left as is, UTF-8,
    space as ``%20``), joined as ``name=value`` with ``&``.

    Encoding the values keeps the string unambiguous: a value holding ``&`` or ``=`` (an SMS
    text, say) cannot pass for extra fields. PHP's ``http_build_query($f, '', '&',
    PHP_QUERY_RFC3986)`` after ``ksort($f, SORT_STRING)`` gives the same string.
    """
    items = sorted(
        ((name, value) for name, value in fields.items() if name != SIGN_FIELD),
        key=lambda item: item[0].encode("utf-8"),
    )
    return "&".join(f"{quote(name, safe='')}={quote(value, safe='')}" for name, value in items)


def form_signature(fields: Mapping[str, str], key: bytes) -> str:
    """The ``sign`` field: lowercase hex HMAC-SHA256 of ``canonical_fields(fields)``."""
    return hmac.new(key, canonical_fields(fields).encode("utf-8"), hashlib.sha256).hexdigest()


def verify_form_signature(fields: Mapping[str, str], key: bytes) -> bool:
    """True when ``fields["sign"]`` is the signature of the other fields (constant time)."""
    given = fields.get(SIGN_FIELD, "")
    return hmac.compare_digest(given.encode("utf-8"), form_signature(fields, key).encode("utf-8"))


def signed_fields(fields: Mapping[str, str], key: bytes) -> dict[str, str]:
    """The fields with ``sign`` added (any ``sign`` already there is replaced)."""
    out = {name: value for name, value in fields.items() if name != SIGN_FIELD}
    out[SIGN_FIELD] = form_signature(out, key)
    return out
