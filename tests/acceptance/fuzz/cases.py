"""Generated cases on the wire: a schemathesis case serialised as schemathesis' own transport
serialises it, handed to an ASGI application as raw bytes, and the answer wrapped for
schemathesis' response checks."""

from __future__ import annotations

import copy
import time
from datetime import timedelta
from typing import Any

import httpx2
import requests
from schemathesis import Case
from starlette.types import ASGIApp
from tests.acceptance.fuzz.fuzz_env import RawResponse, call_raw

# Where a string sits in a JSON value: keys and indexes from the top.
Slot = tuple[Any, ...]


def put(container: Any, slot: Slot, value: str) -> None:
    for key in slot[:-1]:
        container = container[key]
    container[slot[-1]] = value


# --- sending ---------------------------------------------------------------------------------


def _latin1(value: str) -> bytes:
    # As http.client sends header values; a character beyond latin-1 goes out as UTF-8 bytes.
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


async def send_case(
    app: ASGIApp, case: Case, client: str, surrogate: tuple[Slot, str] | None = None
) -> tuple[RawResponse, httpx2.Response]:
    """Serialise the case exactly as schemathesis' own transport does, and hand the bytes to
    the application over raw ASGI."""
    kwargs = case.as_transport_kwargs(base_url="http://gw")
    if surrogate is not None and kwargs.get("json") is not None:
        kwargs["json"] = copy.deepcopy(kwargs["json"])
        put(kwargs["json"], *surrogate)
    prepared = requests.Request(
        method=kwargs["method"],
        url=kwargs["url"],
        headers=kwargs.get("headers"),
        params=kwargs.get("params"),
        cookies=kwargs.get("cookies"),
        json=kwargs.get("json"),
        data=kwargs.get("data"),
        files=kwargs.get("files"),
    ).prepare()
    path, _, query = (prepared.path_url or "/").partition("?")
    body = prepared.body or b""
    if isinstance(body, str):
        body = body.encode("utf-8")
    headers = [
        (name.lower().encode("latin-1"), _latin1(value))
        for name, value in prepared.headers.items()
        if name.lower() != "content-length"
    ]
    started = time.perf_counter()
    raw = await call_raw(
        app,
        case.method.upper(),
        path.encode("latin-1"),
        query=query.encode("latin-1"),
        headers=headers,
        body=body,
        client=client,
    )
    request = httpx2.Request(case.method.upper(), str(prepared.url), headers=headers, content=body)
    response = httpx2.Response(
        raw.status, headers=list(raw.headers.items()), content=raw.body, request=request
    )
    response.elapsed = timedelta(seconds=time.perf_counter() - started)
    return raw, response
