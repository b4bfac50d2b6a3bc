"""send_bulk.php (seed 001): one SMS per request, answered HTTP 200 ``text/plain`` with one
status word, only after the transaction that accepted it has committed (services/bulk.py).

The JSON REST twin lives in ``api/bulk_rest.py``; its routes are part of this router.
"""

from __future__ import annotations

from typing import Any, Final, cast
from urllib.parse import unquote

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from smsgate.api import bulk_rest
from smsgate.api.bodies import replayed
from smsgate.api.bulk_rest import (
    BAN_FAILURES,
    BAN_POLICY,
    BAN_SCOPE,
    MAX_ID,
    MAX_TEXT_CHARS,
    bulk_bans,
)
from smsgate.runtime import Runtime
from smsgate.services.bulk_model import BulkRequest, Refusal, Refused
from smsgate.services.bulk_queue import accept_queue

router = APIRouter()
router.include_router(bulk_rest.router)

MAX_BODY: Final = 2 * 1024 * 1024

# --- send_bulk.php ---------------------------------------------------------------------------


def _pairs(text: str, encoding: str, errors: str) -> dict[str, str]:
    """urllib.parse.parse_qsl(keep_blank_values=True) with the first occurrence of a name
    winning, unquoting only the fields that need it (most need nothing)."""
    params: dict[str, str] = {}
    for field in text.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        if "+" in name:
            name = name.replace("+", " ")
        if "%" in name:
            name = unquote(name, encoding, errors)
        if "+" in value:
            value = value.replace("+", " ")
        if "%" in value:  # also for a repeated name: its escapes decide the encoding too
            value = unquote(value, encoding, errors)
        params.setdefault(name, value)
    return params


def _decode_pairs(raw: bytes) -> dict[str, str]:
    """Form/query pairs, first occurrence wins. Percent-escapes are UTF-8; a script that still
    writes windows-1251 (common in Bulgarian PHP code) is read as such rather than garbled."""
    text = raw.decode("latin-1")
    try:
        return _pairs(text, "utf-8", "strict")
    except UnicodeDecodeError:
        return _pairs(text, "cp1251", "replace")


async def _multipart_params(scope: Scope, body: bytes) -> dict[str, str] | None:
    """The string fields of a multipart body; None when it cannot be parsed."""
    try:
        form = await Request(scope, replayed(body)).form()
    except Exception:  # python-multipart and Starlette raise several kinds for a broken body
        return None
    try:
        return {k: v for k, v in form.items() if isinstance(v, str)}
    finally:
        await form.close()


async def _read_body(receive: Receive) -> bytes:
    """The body, of which only the first MAX_BODY bytes are kept (the rest is drained)."""
    chunks: list[bytes] = []
    kept = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        if kept < MAX_BODY and chunk:
            chunks.append(chunk)
            kept += len(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)[:MAX_BODY]


def _content_type(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return str(value.decode("latin-1").split(";")[0].strip().lower())
    return ""


async def _seed_params(scope: Scope, receive: Receive) -> dict[str, str] | None:
    """The seed's parameters; None when the body is unreadable (INVALID_INPUT)."""
    params = _decode_pairs(scope.get("query_string", b""))
    if scope["method"] == "POST":
        raw = await _read_body(receive)
        if _content_type(scope) == "multipart/form-data":
            body = await _multipart_params(scope, raw)
            if body is None:
                return None
        else:
            body = _decode_pairs(raw) if raw else {}
        # The body wins over the query string for a parameter given in both.
        params.update(body)
    return params


def _positive_id(value: str | None) -> int | None:
    if value is None or not value.isascii() or not value.isdigit():
        return None
    number = int(value)
    return number if 0 < number <= MAX_ID else None


_PLAIN: Final = [(b"content-type", b"text/plain; charset=utf-8")]


async def _word(send: Send, word: str) -> None:
    body = word.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [*_PLAIN, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _SendBulk:
    """``send_bulk.php`` as a bare ASGI endpoint: the seed's one-word answers need none of
    FastAPI's parameter machinery, nor Starlette's request and response objects, and this is
    the hottest path of the gateway."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The request metrics (api/app.py) label by the route the router leaves in the scope;
        # Starlette's plain routes leave none.
        scope["route"] = _ROUTE
        await _word(send, await self.answer(scope, receive))

    @staticmethod
    async def answer(scope: Scope, receive: Receive) -> str:
        app: Any = scope["app"]
        runtime: Runtime = app.state.runtime
        client = scope.get("client")
        address = str(client[0]) if client else ""
        now = runtime.clock.now()
        bans = bulk_bans(app, runtime)
        if await bans.is_banned(BAN_SCOPE, address, BAN_POLICY, now):
            return Refusal.BANNED.word
        params = await _seed_params(scope, receive)
        if params is None:
            await bans.record_failure(BAN_SCOPE, address, BAN_POLICY, now)
            return Refusal.INVALID_INPUT.word
        user_id = _positive_id(params.get("user_id"))
        service_id = _positive_id(params.get("service_id"))
        msisdn = params.get("msisdn", "")
        text = params.get("text", "")
        # A NUL has no place in a text (and PostgreSQL cannot store it).
        if (
            user_id is None
            or service_id is None
            or not msisdn.strip()
            or not text
            or "\x00" in text
        ):
            await bans.record_failure(BAN_SCOPE, address, BAN_POLICY, now)
            return Refusal.INVALID_INPUT.word
        if len(text) > MAX_TEXT_CHARS:
            return Refusal.TOO_LONG.word
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
            return result.word
        runtime.wake_links()
        return f"MSG_OK:{result.mt_id}" if extended else "MSG_OK"


send_bulk: Final = _SendBulk()
# Starlette mounts an endpoint that is not a function as an ASGI app (its type says otherwise).
router.add_route(
    "/users/send_bulk.php", cast(Any, send_bulk), methods=["GET", "POST"], include_in_schema=False
)
_ROUTE: Final = router.routes[-1]


async def _documented(request: Request) -> PlainTextResponse:
    """The OpenAPI description of send_bulk.php. The bare route above is registered first in
    this router and so answers every request; this one is what ``/openapi.json`` shows (and
    what it would answer if it were ever reached)."""
    word = await _SendBulk.answer(request.scope, request.receive)
    return PlainTextResponse(word, media_type="text/plain")


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
    _documented,
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
    _documented,
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
