"""The HTTP application: every router, problem details, request metrics."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import Depends, FastAPI, Request, Response

from smsgate import __version__
from smsgate.api import access_codes, admin, bulk, hosted, links, operator, ops
from smsgate.api.deps import refuse_nul
from smsgate.api.problems import install_problem_handlers
from smsgate.metrics import HTTP_LATENCY
from smsgate.runtime import Runtime


def create_api(runtime: Runtime) -> FastAPI:
    api = FastAPI(
        title="smsgate",
        version=__version__,
        description="SMS micropayment and messaging gateway.",
        dependencies=[Depends(refuse_nul)],
    )
    api.state.runtime = runtime
    install_problem_handlers(api)

    @api.middleware("http")
    async def _measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        HTTP_LATENCY.labels(request.method, path, str(response.status_code)).observe(
            time.perf_counter() - started
        )
        return response

    api.include_router(ops.router)
    api.include_router(operator.router)
    api.include_router(admin.router)
    api.include_router(access_codes.router)
    api.include_router(hosted.router)
    api.include_router(bulk.router)
    api.include_router(links.router)
    return api
