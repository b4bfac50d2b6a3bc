"""The contract between the worker and the code that carries out one kind of job: a handler
of one job at a time, or a batch handler of many."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from sqlalchemy.ext.asyncio import AsyncSession

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


# --- batch handlers ------------------------------------------------------------------------


@dataclass(frozen=True)
class JobOutcome:
    """What became of one job of a batch: done (``error`` None), retry later, or never
    (``permanent``), as returning, raising and raising ``PermanentJobError`` say for one job."""

    error: str | None = None
    permanent: bool = False


DONE: JobOutcome = JobOutcome()

# Writes a batch handler makes in the transaction that records its jobs' outcomes.
BatchWrite = Callable[[AsyncSession], Awaitable[None]]


class BatchContext(Protocol):
    """What a batch handler is given besides its jobs."""

    @property
    def runtime(self) -> Runtime: ...

    def now(self) -> datetime: ...

    async def finish(
        self, outcomes: Sequence[tuple[ClaimedJob, JobOutcome]], write: BatchWrite | None = None
    ) -> None:
        """Record these jobs' outcomes, and run ``write`` first, in one transaction. Call it
        for parts of the batch as they end, so a slow job does not hold back the others.
        If the transaction fails the jobs run again after their lease (at least once)."""


@runtime_checkable
class BatchHandler(Protocol):
    """A handler that takes many jobs of its kind at once (the worker claims them in one
    statement, keeps their leases with one heartbeat, and records outcomes set-wise).

    ``run_batch`` calls ``batch.finish`` for every job it was given; a job it returns
    without finishing is retried, and an exception retries all unfinished ones. Raising
    ``asyncio.CancelledError`` (the worker is stopping) gives them back untouched.
    """

    async def run_batch(self, jobs: Sequence[ClaimedJob], batch: BatchContext) -> None: ...
