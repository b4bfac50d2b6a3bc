"""The gateway under fuzzing: the real application on a freshly migrated database, provisioned
through the same use case as ``smsgate apply``, so that authenticated requests reach real
services, and a raw ASGI caller that hands the application bytes exactly as given (no client
library tidies up a broken query string, header or body first)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from fastapi import FastAPI
from pydantic import SecretStr
from starlette.types import ASGIApp

from smsgate.api.app import create_api
from smsgate.app import build_runtime
from smsgate.config import Settings
from smsgate.domain.clock import FakeClock
from smsgate.domain.provisioning import parse_toml
from smsgate.runtime import Runtime
from smsgate.services.provisioning import apply

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
ADMIN_TOKEN = "fuzz-admin-token-0123456789abcdef"
API_KEY = "fuzz-key-merchant-1"
OTHER_API_KEY = "fuzz-key-merchant-2"
INTAKE_SECRET = "fuzz-intake-secret-0123456789"

# Identifiers that exist once the document below is applied: the fuzzers substitute them for
# generated ones part of the time, so that requests get past "not found" into the real work.
OPERATORS = ("sim-bg", "push-bg")
SERVICES = (102, 103, 104, 201, 202, 301)
MERCHANTS = (1, 2)
SHORT_NUMBERS = ("1851", "1092")
MSISDNS = ("359888123456", "+359888123457", "359 88 812 3458", "447911123456")

# The seed endpoints' answers: HTTP 200, text/plain, exactly one of these words (send_bulk.php
# also MSG_OK:<id> with extended=yes).
CHECK_CODE_WORDS = frozenset(
    {
        "BAN_IP_TEMP",
        "INVALID_IP",
        "INVALID_INPUT",
        "SERVICE_DISABLED",
        "CODE_NOT_FOUND",
        "CODE_EXPIRED",
        "CODE_OK",
    }
)
SEND_BULK_WORDS = frozenset(
    {
        "BAN_IP_TEMP",
        "INVALID_IP",
        "INVALID_INPUT",
        "INVALID_PATTERN",
        "SERVICE_DISABLED",
        "INVALID_MSISDN",
        "LIMIT_DAY",
        "LIMIT_WEEK",
        "LIMIT_MONTH",
        "LIMIT_DELAY",
        "MSG_OK",
    }
)

DOCUMENT = f"""
[[operators]]
id = "sim-bg"
country = "BG"
kind = "smpp"
host = "127.0.0.1"
port = 9
system_id = "smsgate"
password = "secret"
tps = 200
window = 10
intake_secret = "{INTAKE_SECRET}"

[[operators]]
id = "push-bg"
country = "BG"
kind = "http"
intake_secret = "{INTAKE_SECRET}"

[[short_numbers]]
number = "1851"
operator = "sim-bg"
price = "2.40"
currency = "BGN"
default_reply = "Unknown keyword. Send KOD to 1851."

[[short_numbers]]
number = "1092"
operator = "push-bg"
price = "1.20"
currency = "BGN"

[[merchants]]
id = 1
login = "shop"
password = "change-me-please"
api_key = "{API_KEY}"
currency = "BGN"
credit = "50.00"

[[merchants]]
id = 2
login = "other"
password = "change-me-too"
api_key = "{OTHER_API_KEY}"
currency = "BGN"

[[services]]
id = 102
merchant = 1
type = "access_code"
keyword = "KOD"
short_numbers = ["1851"]
code_kind = "uses"
uses = 2
reply_template = "Your code: {{code}}"
return_url = "https://shop.example/return?from=sms"

[[services]]
id = 103
merchant = 1
type = "access_code"
keyword = "OFF"
short_numbers = ["1851"]
status = "disabled"

[[services]]
id = 104
merchant = 1
type = "access_code"
keyword = "LOCK"
short_numbers = ["1092"]
ip_allowlist = ["10.9.0.0/16"]
code_kind = "period_from_first_use"
validity_seconds = 600

[[services]]
id = 201
merchant = 1
type = "bulk"
sender = "SHOP"
limit_day = 1000
limit_week = 5000
limit_month = 20000
dlr_url = "http://127.0.0.1:9/dlr"
price_per_part = "0.05"
max_parts = 3

[[services]]
id = 202
merchant = 1
type = "bulk"
sender = "SHOP"
limit_day = 3
min_interval_seconds = 60
patterns = ["Your order {{*}} is ready"]
ip_allowlist = ["10.9.0.0/16", "2001:db8::/32"]
price_per_part = "0.05"

[[services]]
id = 301
merchant = 2
type = "bulk"
sender = "OTHER"
price_per_part = "0.10"

[[routes]]
operator = "sim-bg"
"""


@dataclass
class Gateway:
    runtime: Runtime
    app: FastAPI
    admin: dict[str, str] = field(
        default_factory=lambda: {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    merchant: dict[str, str] = field(default_factory=lambda: {"X-API-Key": API_KEY})
    operator: dict[str, str] = field(
        default_factory=lambda: {"Authorization": f"Bearer {INTAKE_SECRET}"}
    )


def _settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        admin_token=SecretStr(ADMIN_TOKEN),
        webhook_allow_private=True,
    )


async def provision(database_url: str) -> None:
    """Apply the document, as ``smsgate apply`` does, then give the listings something to
    list (a paid MO and its code, a failed check, messages, an opt-out, a payout), through
    the HTTP API as clients would."""
    runtime = build_runtime(_settings(database_url), clock=FakeClock(NOW))
    try:
        document = parse_toml(DOCUMENT, source="fuzz.toml")
        await apply(runtime.sessions, document, actor="fuzz", now=NOW)
    finally:
        await runtime.engine.dispose()
    async with open_gateway(database_url) as gateway:
        for method, path, query, headers, body in _history(gateway):
            raw = json.dumps(body).encode() if body is not None else b""
            if raw:
                headers = {**headers, "content-type": "application/json"}
            response = await call_raw(
                gateway.app,
                method,
                path.encode(),
                query=query.encode(),
                headers=[(k.lower().encode(), v.encode()) for k, v in headers.items()],
                body=raw,
            )
            assert response.status < 300, (path, response)


def _history(gateway: Gateway) -> list[tuple[str, str, str, dict[str, str], Any]]:
    mo = {"message_id": "seed-1", "msisdn": MSISDNS[0], "short_number": "1851", "text": "KOD"}
    check = "user_id=1&service_id=102&code=NOTACODE"
    one = {"service_id": 201, "to": MSISDNS[0], "text": "Your order 42 is ready"}
    many = {"service_id": 201, "to": list(MSISDNS[:3]), "text": "Hello"}
    return [
        ("POST", "/operators/sim-bg/mo", "", gateway.operator, mo),
        ("GET", "/users/check_code.php", check, {}, None),
        ("POST", "/api/v1/messages", "", gateway.merchant, one),
        ("POST", "/api/v1/messages", "", gateway.merchant, many),
        ("POST", "/api/v1/services/201/opt-outs", "", gateway.merchant, {"msisdn": MSISDNS[3]}),
        (
            "POST",
            "/admin/v1/merchants/1/payouts",
            "",
            gateway.admin,
            {"amount": "1.00", "reference": "seed-1"},
        ),
    ]


@asynccontextmanager
async def open_gateway(database_url: str) -> AsyncIterator[Gateway]:
    """The application over a database that ``provision`` has filled."""
    runtime = build_runtime(_settings(database_url), clock=FakeClock(NOW))
    app = create_api(runtime)
    try:
        yield Gateway(runtime, app)
    finally:
        for name in ("code_checker", "bulk_bans"):
            closer = getattr(getattr(app.state, name, None), "aclose", None)
            if closer is not None:
                await closer()
        await runtime.engine.dispose()


# --- raw ASGI ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[bytes, bytes]
    body: bytes

    @property
    def content_type(self) -> bytes:
        return self.headers.get(b"content-type", b"")

    def json(self) -> Any:
        return json.loads(self.body)


async def call_raw(
    app: ASGIApp,
    method: str,
    path: bytes,
    *,
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
    client: str = "127.0.0.1",
    chunk: int = 64 * 1024,
    sink: list[dict[str, Any]] | None = None,
) -> RawResponse:
    """One request as an ASGI server would pass it on: path, query string, headers and body
    are bytes as they came off the wire (the body in chunks of ``chunk`` bytes). ``sink``
    collects the ASGI messages sent, for a caller that expects the application to raise."""
    sent_headers = [(b"host", b"gw"), *(headers or [])]
    if body and not any(name.lower() == b"content-length" for name, _ in sent_headers):
        sent_headers.append((b"content-length", str(len(body)).encode()))
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(path.decode("latin-1")),
        "raw_path": path,
        "query_string": query,
        "root_path": "",
        "headers": sent_headers,
        "client": (client, 50000),
        "server": ("gw", 80),
    }
    chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)] or [b""]
    messages: list[dict[str, Any]] = [] if sink is None else sink

    async def receive() -> dict[str, Any]:
        if chunks:
            part = chunks.pop(0)
            return {"type": "http.request", "body": part, "more_body": bool(chunks)}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await app(scope, receive, send)
    start = next(m for m in messages if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return RawResponse(start["status"], dict(start["headers"]), content)
