"""Operations endpoints: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from smsgate.api.deps import RuntimeDep
from smsgate.metrics import REGISTRY

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_class=PlainTextResponse)
async def healthz() -> str:
    return "ok"


@router.get("/readyz", response_class=PlainTextResponse)
async def readyz(runtime: RuntimeDep, response: Response) -> str:
    try:
        async with runtime.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception:  # any failure of the database means not ready
        response.status_code = 503
        return "database unavailable"
    return "ready"


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
