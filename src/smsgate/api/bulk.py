"""send_bulk.php (seed 001): one SMS per request, answered HTTP 200 ``text/plain`` with one
status word, only after the transaction that accepted it has committed (services/bulk.py).

The JSON REST twin lives in ``api/bulk_rest.py``; its routes are part of this router.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from smsgate.api import bulk_rest
from smsgate.api.bulk_rest import (
    BAN_FAILURES,
    BAN_POLICY,
    BAN_SCOPE,
    MAX_ID,
    MAX_TEXT_CHARS,
    RuntimeDep,
    bulk_bans,
)
from smsgate.api.deps import client_ip
from smsgate.services.bulk import BulkRequest, Refusal, Refused
from smsgate.services.bulk_queue import accept_queue

router = APIRouter()
router.include_router(bulk_rest.router)

MAX_BODY: Final = 2 * 1024 * 1024

# --- send_bulk.php ---------------------------------------------------------------------------


def _decode_pairs(raw: bytes) -> dict[str, str]:
    """Form/query pairs, first occurrence wins. Percent-escapes are UTF-8; a script that still
    writes windows-1251 (common in Bulgarian PHP code) is read as such rather than garbled."""
    text = raw.decode("latin-1")
    try:
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        pairs = parse_qsl(text, keep_blank_values=True, encoding="cp1251", errors="replace")
    params: dict[str, str] = {}
    for key, value in pairs:
        params.setdefault(key, value)
    return params


async def _multipart_params(request: Request) -> dict[str, str] | None:
    """The string fields of a multipart body; None when it cannot be parsed."""
    try:
        form = await request.form()
    except Exception:  # python-multipart and Starlette raise several kinds for a broken body
        return None
    try:
        return {k: v for k, v in form.items() if isinstance(v, str)}
    finally:
        await form.close()


async def _seed_params(request: Request) -> dict[str, str] | None:
    """The seed's parameters; None when the body is unreadable (INVALID_INPUT)."""
    params = _decode_pairs(request.scope.get("query_string", b""))
    if request.method == "POST":
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "multipart/form-data":
            body = await _multipart_params(request)
            if body is None:
                return None
        else:
            raw = await request.body()
            body = _decode_pairs(raw[:MAX_BODY]) if raw else {}
        # The body wins over the query string for a parameter given in both.
        params.update(body)
    return params


def _positive_id(value: str | None) -> int | None:
    if value is None or not value.isascii() or not value.isdigit():
        return None
    number = int(value)
    return number if 0 < number <= MAX_ID else None


def _word(word: str) -> PlainTextResponse:
    return PlainTextResponse(word, status_code=200, media_type="text/plain")


async def send_bulk(request: Request, runtime: RuntimeDep) -> PlainTextResponse:
    address = client_ip(request)
    now = runtime.clock.now()
    bans = bulk_bans(request, runtime)
    if await bans.is_banned(BAN_SCOPE, address, BAN_POLICY, now):
        return _word(Refusal.BANNED.word)
    params = await _seed_params(request)
    if params is None:
        await bans.record_failure(BAN_SCOPE, address, BAN_POLICY, now)
        return _word(Refusal.INVALID_INPUT.word)
    user_id = _positive_id(params.get("user_id"))
    service_id = _positive_id(params.get("service_id"))
    msisdn = params.get("msisdn", "")
    text = params.get("text", "")
    # A NUL has no place in a text (and PostgreSQL cannot store it).
    if user_id is None or service_id is None or not msisdn.strip() or not text or "\x00" in text:
        await bans.record_failure(BAN_SCOPE, address, BAN_POLICY, now)
        return _word(Refusal.INVALID_INPUT.word)
    if len(text) > MAX_TEXT_CHARS:
        return _word(Refusal.TOO_LONG.word)
    extended = params.get("extended", "").strip().lower() == "yes"
    result = await accept_queue(runtime.sessions).send(
        BulkRequest(
            service_id=service_id,
            user_id=user_id,
            msisdn=msisdn,
            text=text,
            client_ip=address,
            via="legacy",
            details={"extended": extended},
        ),
        now=now,
    )
    if isinstance(result, Refused):
        if result.reason in BAN_FAILURES:
            await bans.record_failure(BAN_SCOPE, address, BAN_POLICY, now)
        return _word(result.word)
    runtime.wake_links()
    return _word(f"MSG_OK:{result.mt_id}" if extended else "MSG_OK")


_SEED_PARAMS: Final = [
    ("user_id", "integer", True, "Your user id (the merchant id)."),
    ("service_id", "integer", True, "The bulk service to send through."),
    ("msisdn", "string", True, "The recipient in international format: 3598..."),
    ("text", "string", True, "The message, URL-encoded UTF-8 (windows-1251 is accepted)."),
    ("extended", "string", False, "yes: answer MSG_OK:<id>, the id DLR callbacks carry."),
]
_SEED_DOC: Final = {
    "tags": ["seed 001: bulk SMS"],
    "response_class": PlainTextResponse,
    "summary": "Send one SMS (seed 001)",
    "description": (
        "Answers HTTP 200 text/plain with one word: BAN_IP_TEMP, INVALID_IP, INVALID_INPUT, "
        "INVALID_PATTERN, SERVICE_DISABLED, INVALID_MSISDN, LIMIT_DAY, LIMIT_WEEK, "
        "LIMIT_MONTH, LIMIT_DELAY, MSG_OK, or MSG_OK:<id> with extended=yes. The order of "
        "checks is in docs/bulk.md."
    ),
    "responses": {200: {"content": {"text/plain": {"example": "MSG_OK:1042"}}}},
}
router.add_api_route(
    "/users/send_bulk.php",
    send_bulk,
    methods=["GET"],
    operation_id="send_bulk_get",
    openapi_extra={
        "parameters": [
            {"name": n, "in": "query", "required": r, "description": d, "schema": {"type": t}}
            for n, t, r, d in _SEED_PARAMS
        ]
    },
    **_SEED_DOC,  # type: ignore[arg-type]
)
router.add_api_route(
    "/users/send_bulk.php",
    send_bulk,
    methods=["POST"],
    operation_id="send_bulk_post",
    openapi_extra={
        "requestBody": {
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            n: {"type": t, "description": d} for n, t, _, d in _SEED_PARAMS
                        },
                    }
                }
            }
        }
    },
    **_SEED_DOC,  # type: ignore[arg-type]
)
