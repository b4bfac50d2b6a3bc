"""The HTTP application: every router, problem details, request metrics."""

from __future__ import annotations

import time

from fastapi import Depends, FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from smsgate import __version__
from smsgate.api import access_codes, admin, bulk, hosted, links, operator, ops
from smsgate.api.deps import refuse_nul
from smsgate.api.problems import install_problem_handlers
from smsgate.metrics import HTTP_LATENCY
from smsgate.runtime import Runtime


class RequestMetrics:
    """Observes each request's latency by route template.

    A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` (``@app.middleware``) runs the
    endpoint in a separate task with memory streams, several times the cost of this on the
    hottest endpoints.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            # The router records the matched route in the scope it shares with us.
            path = getattr(scope.get("route"), "path", "unmatched")
            HTTP_LATENCY.labels(scope["method"], path, str(status)).observe(
                time.perf_counter() - started
            )


def create_api(runtime: Runtime) -> FastAPI:
    api = FastAPI(
        title="smsgate",
        version=__version__,
        description="SMS micropayment and messaging gateway.",
        dependencies=[Depends(refuse_nul)],
    )
    api.state.runtime = runtime
    install_problem_handlers(api)

    api.add_middleware(RequestMetrics)

    # Routes are matched in order: the seed endpoints, the hottest, come first so that their
    # requests are not first compared with every admin and intake path.
    api.include_router(bulk.router)
    api.include_router(access_codes.router)
    api.include_router(ops.router)
    api.include_router(operator.router)
    api.include_router(admin.router)
    api.include_router(hosted.router)
    api.include_router(links.router)
    return api
