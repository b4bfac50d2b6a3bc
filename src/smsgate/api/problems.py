"""RFC 9457 problem details for every JSON endpoint: bad input gets a clear 4xx, never a 500.

The handlers below turn every refusal into ``application/problem+json``; the OpenAPI document
says so too (``document_problems``), so that a client generated from it, and the fuzz tests
that check every answer against it, expect what the gateway actually sends.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"

log = logging.getLogger(__name__)


class Problem(Exception):
    def __init__(self, status: int, title: str, detail: str = "", **extra: Any) -> None:
        super().__init__(title)
        self.status = status
        self.title = title
        self.detail = detail
        self.extra = extra


def problem_response(status: int, title: str, detail: str = "", **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.title, exc.detail, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in exc.errors()
        ]
        return problem_response(
            422, "Invalid request", "The request failed validation.", errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = problem_response(exc.status_code, str(exc.detail))
        # WWW-Authenticate on a 401, Allow on a 405: the headers are part of the answer.
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, _exc: Exception) -> JSONResponse:
        # A safety net, not a policy: every bug that lands here is a bug to fix (the fuzz tests
        # fail on any 5xx). The caller gets a problem instead of a bare "Internal Server Error".
        log.exception("unhandled error in %s %s", request.method, request.scope.get("path"))
        return problem_response(500, "Internal Server Error", "The error has been logged.")

    document_problems(app)


# --- the OpenAPI document --------------------------------------------------------------------

_PROBLEM_REF = "#/components/schemas/Problem"
_FASTAPI_422 = "#/components/schemas/HTTPValidationError"
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details.",
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string", "description": "A URI naming the kind of problem."},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "What failed, one entry per field: request validation gives "
            "`loc` and `msg`; a provisioning document gives `entry`, `key` and `message`.",
            "items": {"type": "object"},
        },
    },
}
_CLIENT_ERROR: dict[str, Any] = {
    "description": "The request was refused; the body says why.",
    "content": {PROBLEM_JSON: {"schema": {"$ref": _PROBLEM_REF}}},
}


def document_problems(app: FastAPI) -> None:
    """Make the app's OpenAPI document describe the errors the handlers above produce: any
    4xx of an operation that answers JSON is a problem (``4XX``), FastAPI's default 422
    schema is replaced by the problem it really is, and documented 4xx bodies are sent as
    ``application/problem+json``. Operations that answer only text or HTML (the seed
    endpoints, pages) are left as they are."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        if "Problem" not in components:
            components["Problem"] = PROBLEM_SCHEMA
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    _document_operation(operation)
            components.pop("HTTPValidationError", None)
            components.pop("ValidationError", None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document_operation(operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.get("responses", {})
    if not any(
        "json" in media_type
        for response in responses.values()
        for media_type in response.get("content", {})
    ):
        return
    for status, response in responses.items():
        if not status.startswith("4"):
            continue
        content = response.get("content", {})
        body = content.pop("application/json", None) or content.pop(PROBLEM_JSON, None)
        if body is None or body.get("schema", {}).get("$ref") == _FASTAPI_422:
            body = {"schema": {"$ref": _PROBLEM_REF}}
        content[PROBLEM_JSON] = body
        response["content"] = content
    responses.setdefault("4XX", _CLIENT_ERROR)
