"""The hosted access page ("access code plus redirect", seed 000).

``GET /access/{service_id}`` tells the subscriber what to send where and for how much, and
asks for the code. ``POST /access/{service_id}`` checks it (the same check as
``check_code.php``: the same order, words and bans, recorded with ``via = hosted``); a valid
code is answered with ``303 See Other`` to the service's ``return_url`` with a signed token
(domain/access_tokens.py), anything else with the form again and the answer explained.

The page exists only for services with a ``return_url``: a merchant that checks codes from
its own servers does not expose a second place to try codes. The service's IP allowlist is
for those servers, so it does not apply to browsers here; bans do, per browser address.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy import select

from smsgate.api.access_codes import code_checker
from smsgate.api.deps import client_ip
from smsgate.domain.access_tokens import TOKEN_SECONDS, AccessToken, sign_token
from smsgate.domain.money import MoneyError, format_amount
from smsgate.runtime import Runtime
from smsgate.services.code_checks import (
    MAX_CODE_INPUT,
    CheckAnswer,
    CheckRequest,
    ServiceView,
)
from smsgate.store.models import ServiceShortNumber, ShortNumber

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

_templates: Final = Environment(
    loader=PackageLoader("smsgate", "panel/templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    auto_reload=False,
)

EXPLANATIONS: Final[dict[CheckAnswer, str]] = {
    CheckAnswer.CODE_OK: "Your code is valid.",
    CheckAnswer.CODE_EXPIRED: "This code is no longer valid: its time or its uses are over.",
    CheckAnswer.CODE_NOT_FOUND: "There is no such code. Please check what you typed.",
    CheckAnswer.INVALID_INPUT: "Please type the code you received by SMS.",
    CheckAnswer.SERVICE_DISABLED: "This service has ended; codes are no longer accepted.",
    CheckAnswer.INVALID_IP: "Codes are not accepted from your network.",
    CheckAnswer.BAN_IP_TEMP: "Too many wrong codes from your address. Please try again later.",
}
MAX_FORM: Final = 4096


@dataclass(frozen=True, slots=True)
class Route:
    number: str
    keyword: str
    price: str
    currency: str
    operator_name: str
    vat_note: str


@dataclass(frozen=True, slots=True)
class Status:
    word: str
    message: str
    ok: bool


async def _hosted_service(request: Request, service_id: int) -> ServiceView | None:
    view = await code_checker(request).service_for(service_id, None)
    if view is None or view.config is None or not view.config.return_url:
        return None
    return view


async def _routes(runtime: Runtime, service_id: int, keyword: str) -> list[Route]:
    async with runtime.read_sessions() as session:
        rows = (
            await session.execute(
                select(ShortNumber)
                .join(ServiceShortNumber, ServiceShortNumber.short_number_id == ShortNumber.id)
                .where(ServiceShortNumber.service_id == service_id)
                .order_by(ShortNumber.number, ShortNumber.operator_id)
            )
        ).scalars()
        routes: list[Route] = []
        for number in rows:
            try:
                price = format_amount(number.price_minor, number.currency)
            except MoneyError:
                price = str(number.price_minor)
            routes.append(
                Route(
                    number.number,
                    keyword,
                    price,
                    number.currency,
                    number.operator_id,
                    number.vat_note,
                )
            )
    return routes


async def _page(
    request: Request,
    service_id: int,
    view: ServiceView | None,
    *,
    status: Status | None = None,
    typed: str = "",
    code: int = 200,
) -> HTMLResponse:
    runtime: Runtime = request.app.state.runtime
    context: dict[str, Any] = {
        "service": view,
        "routes": [],
        "status": status,
        "typed": typed,
        "accepting": False,
        "action": f"/access/{service_id}",
    }
    if view is None:
        code = 404
    else:
        context["routes"] = await _routes(runtime, view.id, view.keyword)
        context["accepting"] = view.status == "active"
        if view.status != "active" and status is None:
            context["status"] = _status(CheckAnswer.SERVICE_DISABLED)
    html = _templates.get_template("hosted/access.html").render(context)
    return HTMLResponse(
        html,
        status_code=code,
        headers={
            "Cache-Control": "no-store",
            "X-Frame-Options": "DENY",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
            "form-action 'self'; frame-ancestors 'none'",
        },
    )


def _status(answer: CheckAnswer) -> Status:
    return Status(answer.value, EXPLANATIONS[answer], answer is CheckAnswer.CODE_OK)


def _parse_service_id(text: str) -> int | None:
    if not (text.isascii() and text.isdigit() and 0 < len(text) <= 18) or int(text) == 0:
        return None
    return int(text)


@router.get("/access/{service_id}", response_class=HTMLResponse)
async def access_page(request: Request, service_id: str) -> Response:
    number = _parse_service_id(service_id)
    view = await _hosted_service(request, number) if number is not None else None
    return await _page(request, number or 0, view)


def with_token(return_url: str, token: str) -> str:
    """``return_url`` with ``token=`` added to its query (other parameters are kept)."""
    parts = urlsplit(return_url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query = [(k, v) for k, v in query if k != "token"] + [("token", token)]
    return urlunsplit(parts._replace(query=urlencode(query)))


async def _typed_code(request: Request) -> str:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("application/x-www-form-urlencoded"):
        return ""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return ""
    try:
        fields = parse_qsl(
            body.decode("utf-8", errors="replace"), keep_blank_values=True, max_num_fields=8
        )
    except ValueError:
        return ""
    codes = [value for key, value in fields if key == "code"]
    return codes[0] if len(codes) == 1 else ""


@router.post("/access/{service_id}", response_class=HTMLResponse)
async def access_submit(request: Request, service_id: str) -> Response:
    number = _parse_service_id(service_id)
    view = await _hosted_service(request, number) if number is not None else None
    if view is None or number is None:
        return await _page(request, number or 0, None)
    typed = (await _typed_code(request))[:MAX_CODE_INPUT]
    checker = code_checker(request)
    address = client_ip(request)
    if not typed.strip():
        return await _page(request, number, view, status=_status(CheckAnswer.INVALID_INPUT))
    result = await checker.check(
        CheckRequest(number, typed, address, None, address, "hosted", apply_allowlist=False)
    )
    config = view.config
    if result.answer is CheckAnswer.CODE_OK and result.code_id is not None and config is not None:
        assert config.return_url is not None
        expires = int(checker.clock.now().timestamp()) + TOKEN_SECONDS
        token = sign_token(AccessToken(view.id, result.code_id, expires), view.signing_secret)
        return RedirectResponse(
            with_token(config.return_url, token),
            status_code=303,
            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
        )
    return await _page(request, number, view, status=_status(result.answer), typed=typed)
