"""The contract between the worker and the code that carries out one kind of job."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from smsgate.runtime import Runtime
from smsgate.store.jobs import ClaimedJob


class PermanentJobError(Exception):
    """Raised by a handler when trying again cannot help: the job becomes ``dead`` at once.

    Any other exception means "try again later" (with backoff, until the attempts run out).
    """


@dataclass(frozen=True)
class JobContext:
    """What a handler knows besides the payload: which attempt this is, and the runtime."""

    job: ClaimedJob
    runtime: Runtime

    @property
    def job_id(self) -> int:
        return self.job.id

    @property
    def attempt(self) -> int:
        return self.job.attempt

    @property
    def is_last_attempt(self) -> bool:
        """A failure now makes the job dead (unless it is re-queued by hand)."""
        return self.job.attempt >= self.job.max_attempts

    def now(self) -> datetime:
        return self.runtime.clock.now()


# A handler: ``async def handle(payload, ctx) -> None``. Returning means done; raising means
# retry (``PermanentJobError``: give up). It may run more than once for one job (a worker can
# die after the work and before recording it), so it must be idempotent.
Handler = Callable[[dict[str, Any], JobContext], Awaitable[None]]
