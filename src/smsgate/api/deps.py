"""FastAPI dependencies shared by the routers."""

from __future__ import annotations

import re
from typing import Annotated, Final

from fastapi import Depends, Request
from fastapi.routing import APIRoute

from smsgate.api.problems import Problem
from smsgate.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


# A JSON \uXXXX escape: preceded by an even number of backslashes (after an odd number it is
# the text "\uXXXX", which is harmless).
_JSON_ESCAPE: Final = re.compile(rb"(?<!\\)(?:\\\\)*\\u([0-9a-fA-F]{4})")


def _unstorable_escape(body: bytes) -> bool:
    """Whether a JSON body escapes a NUL or a surrogate without its pair: neither can be
    stored, nor even encoded as UTF-8 to be echoed back."""
    pending_high = -1  # where the escape after a high surrogate must start
    for match in _JSON_ESCAPE.finditer(body):
        code = int(match.group(1), 16)
        if pending_high >= 0 and not (0xDC00 <= code <= 0xDFFF and match.start() == pending_high):
            return True
        if code == 0 or (0xDC00 <= code <= 0xDFFF and pending_high < 0):
            return True
        pending_high = match.end() if 0xD800 <= code <= 0xDBFF else -1
    return pending_high >= 0


MAX_SCANNED_BODY: Final = 1024 * 1024


def _scanned_body(request: Request) -> bool:
    """Whether the body is JSON that FastAPI reads anyway, or short enough to read here."""
    if "json" not in request.headers.get("content-type", ""):
        return False
    route = request.scope.get("route")
    if isinstance(route, APIRoute) and route.body_field is not None:
        return True
    declared = request.headers.get("content-length", "")
    return declared.isdigit() and int(declared) <= MAX_SCANNED_BODY


async def refuse_nul(request: Request) -> None:
    """No parameter of any JSON endpoint may hold a NUL character: it has no meaning in an id,
    a number or a text, and PostgreSQL refuses it in text (the answer would be a 500); nor may
    a JSON string hold an unpaired surrogate (no encoding can store or echo it). Checked
    once for the whole application: path and query parameters, headers, and a JSON body (read
    here once; the handler gets the same bytes). The seed endpoints (``*.php``) answer in
    their own words and do their own checks."""
    # The scope's path, not request.url: building the URL decodes the raw query string as
    # UTF-8, and a client may send any bytes there.
    if str(request.scope.get("path", "")).endswith(".php"):
        return
    parameters = (
        *request.path_params.items(),
        *request.query_params.multi_items(),
        *request.headers.items(),
    )
    for name, value in parameters:
        if "\x00" in name or "\x00" in str(value):
            raise Problem(400, "NUL character", f"The parameter {name[:64]!r} holds a NUL.")
    if _scanned_body(request) and _unstorable_escape(await request.body()):
        raise Problem(
            400, "Invalid character", "A string holds a NUL or an unpaired surrogate escape."
        )
