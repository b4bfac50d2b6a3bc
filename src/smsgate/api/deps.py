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


# A JSON string escape of NUL: "\u0000" preceded by an even number of backslashes (an odd
# number makes it the text "\u0000", which is harmless).
_JSON_NUL: Final = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


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
    a number or a text, and PostgreSQL refuses it in text (the answer would be a 500). Checked
    once for the whole application: path and query parameters, headers, and a JSON body (read
    here once; the handler gets the same bytes). The seed endpoints (``*.php``) answer in
    their own words and do their own checks."""
    if request.url.path.endswith(".php"):
        return
    parameters = (
        *request.path_params.items(),
        *request.query_params.multi_items(),
        *request.headers.items(),
    )
    for name, value in parameters:
        if "\x00" in name or "\x00" in str(value):
            raise Problem(400, "NUL character", f"The parameter {name[:64]!r} holds a NUL.")
    if _scanned_body(request) and _JSON_NUL.search(await request.body()):
        raise Problem(400, "NUL character", "A string in the body holds a NUL (\\u0000).")
