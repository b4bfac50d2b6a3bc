"""Handlers for the worker process that tests/integration/worker/test_worker_sigkill.py kills.

Loaded with ``python -m smsgate.worker --handlers killable_handlers:handlers``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from smsgate.runtime import Runtime
from smsgate.worker import Handler, JobContext


async def block(payload: dict[str, Any], ctx: JobContext) -> None:
    # Tell the test the job is in hand, then never finish: the test kills us here.
    Path(payload["marker"]).write_text(f"{ctx.job_id} {ctx.attempt}")
    await asyncio.Event().wait()


def handlers(runtime: Runtime) -> dict[str, Handler]:
    return {"test.block": block}
