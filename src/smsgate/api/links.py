"""The state of the operator links, for the control panel: ``GET /api/v1/links``.

It reports the links of this process (``smsgate serve`` runs them beside the API; a process
started with ``--no-links`` reports none, and ``/metrics`` of the owning process has the same
figures). Protected by the admin token like the admin API: without a configured token it
answers 404.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from smsgate.api.admin import require_admin
from smsgate.api.deps import RuntimeDep
from smsgate.links.state import board_for

router = APIRouter(prefix="/api/v1", tags=["links"], dependencies=[Depends(require_admin)])


class LinkOut(BaseModel):
    operator: str
    host: str
    port: int
    bind_mode: str = Field(description="transceiver, or transmitter_receiver")
    status: str = Field(description="stopped, standby, connecting, bound or backoff")
    bound: bool
    bound_since: str | None = Field(description="ISO 8601, while bound")
    window: int = Field(description="Outstanding requests allowed")
    in_flight: int = Field(description="Requests sent and not yet answered (window in use)")
    tps_limit: int = Field(description="The operator's configured submit rate")
    send_rate: float = Field(description="The rate the link allows itself now")
    submit_rate: float = Field(description="submit_sm accepted per second, last 5 seconds")
    submitted: int
    throttled: int
    failed: int
    unknown: int
    mo_received: int
    receipts_received: int
    errors: int
    reconnects: int
    last_error: str


class LinksOut(BaseModel):
    links: list[LinkOut]


@router.get("/links", response_model=LinksOut, summary="State of the operator links")
async def list_links(runtime: RuntimeDep) -> dict[str, Any]:
    return {"links": board_for(runtime).snapshot()}
