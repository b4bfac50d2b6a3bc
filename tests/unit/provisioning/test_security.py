"""Secrets: argon2 passwords, SHA-256 API keys, constant-time comparison, generation."""

from __future__ import annotations

import base64
import hashlib

from standardwebhooks import Webhook

from smsgate import security


def test_password_hash_verifies_only_its_password() -> None:
    hashed = security.hash_password("change-me")
    assert hashed.startswith("$argon2id$")
    assert "change-me" not in hashed
    assert security.verify_password(hashed, "change-me")
    assert not security.verify_password(hashed, "change-me!")
    assert not security.verify_password(hashed, "")


def test_password_hashes_are_salted() -> None:
    assert security.hash_password("same") != security.hash_password("same")


def test_a_malformed_hash_is_no_match() -> None:
    assert not security.verify_password("not-a-hash", "x")
    assert not security.verify_password("", "x")
    assert security.password_needs_rehash("not-a-hash")
    assert not security.password_needs_rehash(security.hash_password("x"))


def test_api_key_hash_is_sha256_hex() -> None:
    digest = security.hash_api_key("k-123")
    assert digest == hashlib.sha256(b"k-123").hexdigest()
    assert len(digest) == 64
    assert security.verify_token("k-123", digest)
    assert not security.verify_token("k-124", digest)


def test_constant_time_equals() -> None:
    assert security.constant_time_equals("token", "token")
    assert security.constant_time_equals(b"token", "token")
    assert not security.constant_time_equals("token", "tokem")
    assert not security.constant_time_equals("token", "token-longer")
    assert not security.constant_time_equals("", "token")
    assert security.constant_time_equals("пароль", "пароль")


def test_generated_secrets_are_random_and_long() -> None:
    secrets = {security.generate_secret() for _ in range(50)}
    assert len(secrets) == 50
    assert all(len(s) >= 43 for s in secrets)


def test_signing_secret_is_a_standard_webhooks_secret() -> None:
    secret = security.generate_signing_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert secret != security.generate_signing_secret()
    webhook = Webhook(secret)  # the library that signs callbacks accepts it
    assert webhook is not None
