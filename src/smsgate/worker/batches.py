"""One claimed batch of a batch handler's kind, from the claim to the last recorded outcome.

The worker claims up to ``batch_size`` jobs of a batch kind in one statement and hands them
to the handler's ``run_batch`` with a ``Batch`` as its context. While the handler works, one
heartbeat extends the leases of the jobs not finished yet in one statement. Each
``finish(outcomes, write)`` is one transaction: the handler's own writes (the delivery log,
say), then the jobs done in one statement and the failed ones (with their backoff) in
another. Outcomes are the same as for a single job: done, retry after a backoff, dead.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from datetime import datetime

from smsgate.domain.backoff import RetryPolicy
from smsgate.runtime import Runtime
from smsgate.store import jobs
from smsgate.store.jobs import ClaimedJob
from smsgate.worker.handler import BatchHandler, BatchWrite, JobOutcome

log = logging.getLogger("smsgate.worker")


class Batch:
    """The context of one ``run_batch`` call (``handler.BatchContext``)."""

    def __init__(
        self,
        runtime: Runtime,
        claimed: Sequence[ClaimedJob],
        *,
        policy: RetryPolicy,
        rand: Callable[[], float] = random.random,
        on_finished: Callable[[int], None] = lambda count: None,
    ) -> None:
        self._runtime = runtime
        self._policy = policy
        self._rand = rand
        self._on_finished = on_finished
        self.unfinished: dict[int, ClaimedJob] = {job.id: job for job in claimed}

    @property
    def runtime(self) -> Runtime:
        return self._runtime

    def now(self) -> datetime:
        return self._runtime.clock.now()

    async def finish(
        self, outcomes: Sequence[tuple[ClaimedJob, JobOutcome]], write: BatchWrite | None = None
    ) -> None:
        mine = [(job, outcome) for job, outcome in outcomes if job.id in self.unfinished]
        for job, _ in mine:
            del self.unfinished[job.id]
        if not mine and write is None:
            return
        try:
            # A stop that cancels the batch does not cut a transaction short: what has ended
            # is recorded (otherwise it would only run again after the lease).
            await asyncio.shield(self._record(mine, write))
        except Exception:
            # The leases run out and the jobs run again: at least once, never lost.
            log.exception("could not record the outcomes of %d jobs", len(mine))
        finally:
            self._on_finished(len(mine))

    async def _record(
        self, outcomes: Sequence[tuple[ClaimedJob, JobOutcome]], write: BatchWrite | None
    ) -> None:
        done = [job for job, outcome in outcomes if outcome.error is None]
        failures = [
            jobs.Failure(job, outcome.error, outcome.permanent)
            for job, outcome in outcomes
            if outcome.error is not None
        ]
        now = self.now()
        async with self._runtime.sessions.begin() as session:
            if write is not None:
                await write(session)
            completed = await jobs.complete_many(session, done, now=now)
            statuses = await jobs.fail_many(
                session, failures, now=now, policy=self._policy, rand=self._rand
            )
        for failure in failures:
            if statuses.get(failure.job.id) == jobs.DEAD:
                log.error(
                    "job %s (%s) is dead: %s", failure.job.id, failure.job.kind, failure.error
                )
        lost = len(done) - len(completed)
        if lost:
            log.warning(
                "%d jobs: lease lost before their outcome was recorded; another claim owns "
                "them now",
                lost,
            )

    async def heartbeat(self, lease_seconds: float) -> None:
        """Extend the leases of the unfinished jobs every third of the lease, until cancelled."""
        while True:
            await asyncio.sleep(lease_seconds / 3)
            claims = list(self.unfinished.values())
            if not claims:
                continue
            try:
                async with self._runtime.sessions.begin() as session:
                    kept = await jobs.extend_leases(
                        session, claims, lease_seconds=lease_seconds, now=self.now()
                    )
            except Exception:
                log.exception("could not extend the leases of %d jobs", len(claims))
                continue
            if len(kept) < len(claims):
                log.warning("%d jobs: lease lost while running", len(claims) - len(kept))

    async def release_unfinished(self) -> None:
        """Give the jobs not finished back to the queue, their attempt not counted."""
        claims = list(self.unfinished.values())
        self.unfinished.clear()
        if not claims:
            return
        try:
            async with self._runtime.sessions.begin() as session:
                await jobs.release_many(session, claims, now=self.now())
        except Exception:
            log.exception("could not give back %d jobs; their leases will run out", len(claims))
        finally:
            self._on_finished(len(claims))


async def run_batch(
    handler: BatchHandler, batch: Batch, claimed: Sequence[ClaimedJob], lease_seconds: float
) -> None:
    """Run one batch to its end: every job finished, retried or given back."""
    heartbeat = asyncio.create_task(batch.heartbeat(lease_seconds))
    try:
        await handler.run_batch(claimed, batch)
    except asyncio.CancelledError:
        # Only a stop that ran out of patience cancels a batch: hand the rest back untouched.
        heartbeat.cancel()
        await asyncio.shield(batch.release_unfinished())
        raise
    except Exception as exc:
        log.exception("a batch of %d %s jobs failed", len(claimed), claimed[0].kind)
        error = f"{type(exc).__name__}: {exc}".rstrip(": ")
        await batch.finish([(job, JobOutcome(error)) for job in batch.unfinished.values()])
    finally:
        heartbeat.cancel()
    if batch.unfinished:
        missing = JobOutcome("the batch handler returned without an outcome for this job")
        await batch.finish([(job, missing) for job in batch.unfinished.values()])
