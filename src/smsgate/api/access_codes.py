"""Access codes over HTTP (seed 000).

- ``GET|POST /users/check_code.php?user_id=&service_id=&code=&ip=``: the seed's contract. The
  answer is always HTTP 200, ``text/plain; charset=utf-8``, and the body is exactly one of the
  seven status words, with nothing before or after it, whatever the parameters hold.
- ``POST /api/v1/services/{id}/codes/check``: the same check as JSON, with the merchant's
  API key.
- ``GET /api/v1/services/{id}/codes`` and ``/code-checks``: the trace, for the panel.
- ``GET /bench/noop``: an empty plain-text answer, the yardstick of bench/check_code.py.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Final, Literal
from urllib.parse import parse_qsl

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.datastructures import FormData

from smsgate.api.auth import CurrentMerchant
from smsgate.api.bodies import replayed
from smsgate.api.deps import RuntimeDep, client_ip
from smsgate.api.problems import Problem
from smsgate.runtime import Runtime
from smsgate.services.bans import BanList, make_storage
from smsgate.services.code_checks import (
    MAX_CODE_INPUT,
    CheckAnswer,
    CheckRequest,
    CheckResult,
    CodeChecker,
)
from smsgate.services.code_trace import CheckFilter, CodeFilter, list_checks, list_codes

log = logging.getLogger(__name__)

router = APIRouter()

PLAIN: Final = "text/plain; charset=utf-8"
MAX_BODY: Final = 16 * 1024  # a check is a few short fields; more is not a check
MAX_FIELDS: Final = 64
MAX_ID_DIGITS: Final = 18  # fits a signed 64-bit id
LEGACY_FIELDS: Final = ("user_id", "service_id", "code", "ip")


def app_checker(app: Starlette) -> CodeChecker:
    """The app's checker, made on first use (inside the event loop that will use it)."""
    checker: CodeChecker | None = getattr(app.state, "code_checker", None)
    if checker is None:
        runtime: Runtime = app.state.runtime
        bans = BanList(make_storage(runtime.settings.redis_url))
        checker = CodeChecker(runtime.engine, runtime.clock, bans)
        app.state.code_checker = checker
    return checker


def code_checker(request: Request) -> CodeChecker:
    return app_checker(request.app)


# -- check_code.php ------------------------------------------------------------------------------


class BadInput(Exception):
    """The request's parameters cannot make a check: the answer is INVALID_INPUT."""


def _parse_pairs(text: str) -> list[tuple[str, str]]:
    if "%" not in text and "+" not in text:
        # Nothing to unquote (what merchants' scripts send): parse_qsl's result, cheaper.
        if text and text.count("&") >= MAX_FIELDS:
            raise BadInput("too many fields")
        pairs: list[tuple[str, str]] = []
        for field in text.split("&"):
            if field:
                name, _, value = field.partition("=")
                pairs.append((name, value))
        return pairs
    try:
        return parse_qsl(text, keep_blank_values=True, errors="replace", max_num_fields=MAX_FIELDS)
    except ValueError as exc:  # too many fields
        raise BadInput(str(exc)) from None


async def _read_body(request: Request) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise BadInput("body too large")
    return bytes(body)


async def _form_pairs(request: Request) -> list[tuple[str, str]]:
    """The fields of a POST body: urlencoded or multipart (PHP's curl with an array)."""
    if request.method != "POST":
        return []
    content_type = request.headers.get("content-type", "").lower()
    if not content_type:
        return []
    body = await _read_body(request)
    if content_type.startswith("application/x-www-form-urlencoded"):
        return _parse_pairs(body.decode("utf-8", errors="replace"))
    if content_type.startswith("multipart/form-data"):
        try:
            form: FormData = await Request(request.scope, replayed(body)).form(
                max_files=0, max_fields=MAX_FIELDS
            )
        except Exception as exc:  # malformed multipart in all its forms
            raise BadInput(f"unreadable form: {exc}") from None
        pairs = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
        await form.close()
        return pairs
    return []


def _single(fields: Mapping[str, list[str]], name: str) -> str | None:
    values = fields.get(name, [])
    if len(values) > 1:
        raise BadInput(f"{name} given more than once")
    return values[0] if values else None


def parse_id(value: str | None) -> int:
    """A positive id of at most 18 ASCII digits, spaces around allowed."""
    text = (value or "").strip()
    if not (0 < len(text) <= MAX_ID_DIGITS and text.isascii() and text.isdigit()):
        raise BadInput("not a positive integer")
    number = int(text)
    if number <= 0:
        raise BadInput("not a positive integer")
    return number


async def legacy_fields(request: Request) -> dict[str, list[str]]:
    """Every value of each seed parameter, from the query string and the form together."""
    query = request.scope.get("query_string", b"").decode("utf-8", errors="replace")
    pairs = _parse_pairs(query) + await _form_pairs(request)
    fields: dict[str, list[str]] = {name: [] for name in LEGACY_FIELDS}
    for key, value in pairs:
        if key in fields:
            fields[key].append(value)
    return fields


def _plain(word: CheckAnswer, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return PlainTextResponse(word.value, status_code=status, headers=headers)


async def check_code_php(request: Request) -> Response:
    """Seed 000 ``check_code.php``: one of seven words, HTTP 200, always."""
    checker = code_checker(request)
    requester = client_ip(request)
    code_given = ""
    user_ip = ""
    try:
        fields = await legacy_fields(request)
        code_given = (_single(fields, "code") or "")[: MAX_CODE_INPUT + 1]
        user_ip = _single(fields, "ip") or ""
        user_id = parse_id(_single(fields, "user_id"))
        service_id = parse_id(_single(fields, "service_id"))
        if not code_given.strip() or len(code_given) > MAX_CODE_INPUT:
            raise BadInput("code missing or too long")
    except BadInput:
        try:
            await checker.record_invalid_input(
                code_given=code_given, requester_ip=requester, user_ip=user_ip
            )
        except Exception:
            log.exception("check_code.php: the trace of an invalid request was not stored")
        return _plain(CheckAnswer.INVALID_INPUT)
    try:
        result = await checker.check(
            CheckRequest(service_id, code_given, requester, user_id, user_ip, "legacy")
        )
    except Exception:
        # The database or the ban storage failed: no answer can be given honestly. 503 says
        # "try again"; the body is still a seed word, and never CODE_OK.
        log.exception("check_code.php failed")
        return _plain(CheckAnswer.SERVICE_DISABLED, 503, {"Retry-After": "1"})
    return _plain(result.answer)


# A plain Starlette route: the seed's endpoint needs none of FastAPI's parameter machinery, and
# it is the hottest path of the gateway.
router.add_route(
    "/users/check_code.php", check_code_php, methods=["GET", "POST"], include_in_schema=False
)


async def bench_noop(_request: Request) -> Response:
    return PlainTextResponse("OK")


router.add_route("/bench/noop", bench_noop, methods=["GET"], include_in_schema=False)


# -- JSON API ------------------------------------------------------------------------------------

Answer = Literal[
    "BAN_IP_TEMP",
    "INVALID_IP",
    "INVALID_INPUT",
    "SERVICE_DISABLED",
    "CODE_NOT_FOUND",
    "CODE_EXPIRED",
    "CODE_OK",
]


class CodeCheckIn(BaseModel):
    code: Annotated[str, Field(min_length=1, max_length=MAX_CODE_INPUT, examples=["K7M2XH4P"])]
    ip: Annotated[
        str | None,
        Field(max_length=64, description="The end user's address, kept for the trace."),
    ] = None


class CodeCheckOut(BaseModel):
    answer: Answer = Field(description="The seed 000 status word.")
    ok: bool = Field(description="True exactly when the answer is CODE_OK.")
    code_id: int | None = None
    expires_at: datetime | None = Field(
        None, description="When the code stops being valid by time, if it does."
    )
    uses_left: int | None = Field(None, description="Successful checks left (uses codes).")


class CodeOut(BaseModel):
    id: int
    code: str
    kind: str
    status: Literal["active", "expired", "used"]
    msisdn: str
    mo_id: int | None
    issued_at: datetime
    expires_at: datetime | None
    first_used_at: datetime | None
    uses_left: int | None
    uses_count: int


class CodePage(BaseModel):
    items: list[CodeOut]
    next_before_id: int | None = Field(
        description="Pass as before_id to get the next (older) page; null on the last page."
    )


class CheckOut(BaseModel):
    id: int
    at: datetime
    answer: Answer
    code_given: str
    code_id: int | None
    msisdn: str | None
    requester_ip: str
    user_ip: str
    via: Literal["legacy", "rest", "hosted"]


class CheckPage(BaseModel):
    items: list[CheckOut]
    next_before_id: int | None


def _result_out(result: CheckResult) -> CodeCheckOut:
    return CodeCheckOut(
        answer=result.answer.value,
        ok=result.answer is CheckAnswer.CODE_OK,
        code_id=result.code_id,
        expires_at=result.expires_at,
        uses_left=result.uses_left,
    )


def _not_found(service_id: int) -> Problem:
    return Problem(
        404, "Not Found", f"You have no access-code service {service_id}.", service_id=service_id
    )


ServiceId = Annotated[int, Path(ge=1, le=10**18 - 1)]


@router.post(
    "/api/v1/services/{service_id}/codes/check",
    response_model=CodeCheckOut,
    tags=["access codes"],
    summary="Check an access code",
    responses={401: {"description": "No valid API key"}, 404: {"description": "No such service"}},
)
async def check_code_json(
    service_id: ServiceId,
    body: CodeCheckIn,
    request: Request,
    merchant: CurrentMerchant,
) -> CodeCheckOut:
    """Answers as ``check_code.php`` does (the same order of checks, the same words, the same
    bans), for a service of the authenticated merchant."""
    checker = code_checker(request)
    if await checker.service_for(service_id, merchant.id) is None:
        raise _not_found(service_id)
    result = await checker.check(
        CheckRequest(service_id, body.code, client_ip(request), merchant.id, body.ip or "", "rest")
    )
    return _result_out(result)


async def _own_service(request: Request, service_id: int, merchant_id: int) -> None:
    if await code_checker(request).service_for(service_id, merchant_id) is None:
        raise _not_found(service_id)


Since = Annotated[datetime | None, Query(alias="from", description="At or after (ISO 8601).")]
Until = Annotated[datetime | None, Query(alias="to", description="Before (ISO 8601).")]
Limit = Annotated[int, Query(ge=1, le=500)]
BeforeId = Annotated[int | None, Query(ge=1, description="next_before_id of the previous page")]
Msisdn = Annotated[str | None, Query(max_length=32, pattern=r"^\+?[0-9]{1,20}$")]


_EARLIEST: Final = datetime.min.replace(tzinfo=UTC)
_LATEST: Final = datetime.max.replace(tzinfo=UTC)


def _aware(when: datetime | None) -> datetime | None:
    if when is not None and when.tzinfo is None:
        raise Problem(422, "Invalid request", "Times need a zone offset, e.g. 2026-01-31T10:00Z.")
    if when is not None and not _EARLIEST < when < _LATEST:  # else no UTC time in the database
        raise Problem(422, "Invalid request", "Times lie between the years 1 and 9999 in UTC.")
    return when


@router.get(
    "/api/v1/services/{service_id}/codes",
    response_model=CodePage,
    tags=["access codes"],
    summary="List the codes a service issued",
)
async def get_codes(
    service_id: ServiceId,
    request: Request,
    runtime: RuntimeDep,
    merchant: CurrentMerchant,
    since: Since = None,
    until: Until = None,
    msisdn: Msisdn = None,
    status: Literal["active", "expired", "used"] | None = None,
    code: Annotated[str | None, Query(max_length=MAX_CODE_INPUT)] = None,
    limit: Limit = 100,
    before_id: BeforeId = None,
) -> CodePage:
    """Newest first. ``status`` is as of now (``expired``: out of time; ``used``: out of uses)."""
    await _own_service(request, service_id, merchant.id)
    flt = CodeFilter(_aware(since), _aware(until), msisdn, status, code)
    async with runtime.read_sessions() as session:
        page = await list_codes(
            session, service_id, flt, now=runtime.clock.now(), limit=limit, before_id=before_id
        )
    return CodePage(
        items=[CodeOut.model_validate(row, from_attributes=True) for row in page.items],
        next_before_id=page.next_before_id,
    )


@router.get(
    "/api/v1/services/{service_id}/code-checks",
    response_model=CheckPage,
    tags=["access codes"],
    summary="List the check attempts on a service",
)
async def get_code_checks(
    service_id: ServiceId,
    request: Request,
    runtime: RuntimeDep,
    merchant: CurrentMerchant,
    since: Since = None,
    until: Until = None,
    answer: Answer | None = None,
    msisdn: Msisdn = None,
    code_id: Annotated[int | None, Query(ge=1)] = None,
    limit: Limit = 100,
    before_id: BeforeId = None,
) -> CheckPage:
    """Newest first; ``msisdn`` matches the phone number of the code that was checked."""
    await _own_service(request, service_id, merchant.id)
    flt = CheckFilter(_aware(since), _aware(until), answer, msisdn, code_id)
    async with runtime.read_sessions() as session:
        page = await list_checks(session, service_id, flt, limit=limit, before_id=before_id)
    return CheckPage(
        items=[CheckOut.model_validate(row, from_attributes=True) for row in page.items],
        next_before_id=page.next_before_id,
    )
