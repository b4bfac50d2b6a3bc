"""Batch handlers in the worker loop on SQLite and PostgreSQL: one claim for many jobs, the
three outcomes with their backoff, a handler that fails or forgets a job, leases kept by one
heartbeat, whole batches while backed up, and single-job kinds beside batch kinds."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from smsgate.domain.backoff import RetryPolicy
from smsgate.domain.clock import FakeClock, SystemClock
from smsgate.runtime import Runtime
from smsgate.store import jobs
from smsgate.store.jobs import ClaimedJob
from smsgate.store.models import Job
from smsgate.worker import JobContext, Worker
from smsgate.worker.handler import DONE, BatchContext, JobOutcome

DEADLINE = 10.0
POLICY = RetryPolicy(base_seconds=10.0, cap_seconds=100.0)


async def _enqueue_many(runtime: Runtime, kind: str, count: int) -> list[int]:
    async with runtime.sessions.begin() as session:
        return [
            await jobs.enqueue(session, kind, {"n": n}, now=runtime.clock.now())
            for n in range(count)
        ]


async def _rows(runtime: Runtime) -> dict[int, Job]:
    async with runtime.sessions() as session:
        return {job.id: job for job in await jobs.list_jobs(session, limit=10_000)}


class _Outcomes:
    """Finishes job n with ``outcome_of(n)``, half the batch at a time; notes each batch."""

    def __init__(self, outcome_of: Any = lambda n: DONE) -> None:
        self.outcome_of = outcome_of
        self.batches: list[list[int]] = []

    async def run_batch(self, claimed: Sequence[ClaimedJob], batch: BatchContext) -> None:
        self.batches.append([job.payload["n"] for job in claimed])
        half = len(claimed) // 2
        for part in (claimed[:half], claimed[half:]):
            await batch.finish([(job, self.outcome_of(job.payload["n"])) for job in part])


async def test_one_batch_takes_many_jobs_and_records_the_three_outcomes(
    runtime: Runtime, clock: FakeClock
) -> None:
    ids = await _enqueue_many(runtime, "b", 30)

    def outcome(n: int) -> JobOutcome:
        return [DONE, JobOutcome("try later"), JobOutcome("never", permanent=True)][n % 3]

    handler = _Outcomes(outcome)
    worker = Worker(
        runtime, {"b": handler}, batch_size=50, retry_policies={"b": POLICY}, rand=lambda: 1.0
    )
    assert await worker.run_pending() == 30
    assert handler.batches == [list(range(30))]  # one claim, one batch
    rows = await _rows(runtime)
    for n, job_id in enumerate(ids):
        job = rows[job_id]
        assert (job.status, job.attempts, job.locked_by) == (
            ["done", "queued", "dead"][n % 3],
            1,
            None,
        )
        if n % 3 == 1:
            assert (job.last_error, job.run_at) == (
                "try later",
                clock.now() + timedelta(seconds=10),
            )
    assert await worker.run_pending() == 0
    clock.advance(10)
    handler.outcome_of = lambda n: DONE
    assert await worker.run_pending() == 10
    assert [job.status for job in (await _rows(runtime)).values()].count("done") == 20


class _Broken:
    def __init__(self) -> None:
        self.calls = 0

    async def run_batch(self, claimed: Sequence[ClaimedJob], batch: BatchContext) -> None:
        self.calls += 1
        await batch.finish([(claimed[0], DONE)])
        if self.calls == 1:
            raise RuntimeError("the merchant's DNS is on fire")
        # Later calls finish the first job only and forget the rest.


async def test_a_failing_or_forgetful_batch_handler_leaves_its_jobs_to_be_retried(
    runtime: Runtime, clock: FakeClock
) -> None:
    ids = await _enqueue_many(runtime, "b", 3)
    worker = Worker(runtime, {"b": _Broken()}, retry_policies={"b": POLICY}, rand=lambda: 1.0)
    assert await worker.run_pending() == 3
    rows = await _rows(runtime)
    assert rows[ids[0]].status == "done"
    assert {(rows[i].status, rows[i].last_error) for i in ids[1:]} == {
        ("queued", "RuntimeError: the merchant's DNS is on fire")
    }
    clock.advance(10)
    assert await worker.run_pending() == 2
    rows = await _rows(runtime)
    assert rows[ids[1]].status == "done"
    assert (rows[ids[2]].status, rows[ids[2]].attempts) == ("queued", 2)
    assert "without an outcome" in rows[ids[2]].last_error


class _Slow:
    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def run_batch(self, claimed: Sequence[ClaimedJob], batch: BatchContext) -> None:
        await batch.finish([(claimed[0], DONE)])
        self.started.set()
        await self.release.wait()
        await batch.finish([(job, DONE) for job in claimed[1:]])


async def test_one_heartbeat_keeps_the_leases_of_the_unfinished_jobs(runtime: Runtime) -> None:
    runtime.clock = SystemClock()
    ids = await _enqueue_many(runtime, "b", 4)
    handler = _Slow()
    worker = Worker(runtime, {"b": handler}, lease_seconds=0.3, poll_seconds=0.01)
    task = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(DEADLINE):
            await handler.started.wait()
            first = await _rows(runtime)
            await asyncio.sleep(0.5)  # longer than the lease
            later = await _rows(runtime)
    finally:
        handler.release.set()
        worker.stop()
        await task
    assert first[ids[0]].status == "done"
    for job_id in ids[1:]:
        assert later[job_id].status == "running"
        assert later[job_id].lease_until > first[job_id].lease_until  # type: ignore[operator]
        assert later[job_id].attempts == 1  # never taken over
    assert {job.status for job in (await _rows(runtime)).values()} == {"done"}


async def test_while_backed_up_whole_batches_are_claimed(runtime: Runtime) -> None:
    runtime.clock = SystemClock()
    await _enqueue_many(runtime, "b", 100)
    handler = _Outcomes()
    worker = Worker(runtime, {"b": handler}, batch_size=20, max_batched=40, poll_seconds=0.01)
    task = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(DEADLINE):
            while sum(map(len, handler.batches)) < 100:
                await asyncio.sleep(0.01)
    finally:
        worker.stop()
        await task
    assert [len(b) for b in handler.batches] == [20] * 5
    assert sorted(n for b in handler.batches for n in b) == list(range(100))


async def test_single_job_kinds_run_beside_batch_kinds(runtime: Runtime) -> None:
    await _enqueue_many(runtime, "b", 5)
    await _enqueue_many(runtime, "one", 3)
    ran: list[int] = []

    async def one(payload: dict[str, Any], ctx: JobContext) -> None:
        ran.append(payload["n"])

    handler = _Outcomes()
    worker = Worker(runtime, {"b": handler, "one": one}, batch_size=10)
    assert await worker.run_pending() == 8
    assert handler.batches == [[0, 1, 2, 3, 4]]
    assert sorted(ran) == [0, 1, 2]
    assert {job.status for job in (await _rows(runtime)).values()} == {"done"}


async def test_jobs_that_trickle_in_are_gathered_into_few_batches(runtime: Runtime) -> None:
    runtime.clock = SystemClock()
    handler = _Outcomes()
    worker = Worker(runtime, {"b": handler}, batch_linger_seconds=0.5, poll_seconds=0.01)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(0.05)  # idle: the first claim comes at once, then lingers
        for n in range(10):  # ten commits, each waking the worker
            async with runtime.sessions.begin() as session:
                await jobs.enqueue(session, "b", {"n": n}, now=runtime.clock.now())
        async with asyncio.timeout(DEADLINE):
            while sum(map(len, handler.batches)) < 10:
                await asyncio.sleep(0.01)
    finally:
        worker.stop()
        await task
    assert sorted(n for b in handler.batches for n in b) == list(range(10))
    assert len(handler.batches) < 10
