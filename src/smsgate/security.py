"""Secrets: password hashing, API key hashing, constant-time comparison, secret generation.

- Passwords (merchant logins) are hashed with argon2id: slow on purpose, salted, so a leaked
  table does not give the passwords away.
- API keys and operator intake secrets are long random strings presented on every request;
  a SHA-256 hex digest is enough for them (no dictionary to attack) and, being deterministic,
  can be looked up through an index (``merchants.api_key_hash`` is unique).
- Every comparison of a presented secret with an expected one goes through
  :func:`constant_time_equals`, so the time taken does not reveal how much of it matched.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# argon2-cffi's defaults follow RFC 9106's second recommended option (argon2id, 64 MiB, t=3).
_HASHER: Final = PasswordHasher()

# Standard Webhooks: a secret is "whsec_" + base64 of 24 to 64 random bytes.
SIGNING_SECRET_PREFIX: Final = "whsec_"  # noqa: S105 (a format prefix, not a secret)
SIGNING_SECRET_BYTES: Final = 32


def hash_password(password: str) -> str:
    """An argon2id hash (PHC string with its own salt and parameters)."""
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches the hash; a malformed hash is simply no match."""
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def password_needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with weaker parameters than today's (rehash after login)."""
    try:
        return _HASHER.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


def hash_token(token: str) -> str:
    """SHA-256 hex digest of an API key or an intake secret (64 lowercase hex characters)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def hash_api_key(api_key: str) -> str:
    """The value stored in ``merchants.api_key_hash`` and looked up on each request."""
    return hash_token(api_key)


def constant_time_equals(presented: str | bytes, expected: str | bytes) -> bool:
    """Compare two secrets in time that depends only on their lengths."""
    a = presented.encode("utf-8") if isinstance(presented, str) else presented
    b = expected.encode("utf-8") if isinstance(expected, str) else expected
    return hmac.compare_digest(a, b)


def verify_token(token: str, token_hash: str) -> bool:
    """Whether ``token`` hashes to ``token_hash`` (compared in constant time)."""
    return constant_time_equals(hash_token(token), token_hash)


def generate_secret(nbytes: int = 32) -> str:
    """A URL-safe random string with ``nbytes`` bytes of entropy (API keys, tokens)."""
    return secrets.token_urlsafe(nbytes)


def generate_signing_secret() -> str:
    """A webhook signing secret in the Standard Webhooks format (``whsec_`` + base64)."""
    raw = secrets.token_bytes(SIGNING_SECRET_BYTES)
    return SIGNING_SECRET_PREFIX + base64.b64encode(raw).decode("ascii")
