"""The worker loop on SQLite and PostgreSQL: outcomes, retries by the clock, nudges, leases,
stopping."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import insert

from smsgate.domain.backoff import RetryPolicy
from smsgate.domain.clock import FakeClock, SystemClock
from smsgate.metrics import OUTBOX_DEPTH, OUTBOX_OLDEST_AGE
from smsgate.runtime import Runtime
from smsgate.store import jobs
from smsgate.store.models import Job
from smsgate.worker import JobContext, PermanentJobError, Worker
from smsgate.worker.handler import Handler

DEADLINE = 10.0  # seconds: bound for anything that waits on real I/O


async def _enqueue(runtime: Runtime, kind: str, payload: dict[str, Any], **kwargs: Any) -> int:
    async with runtime.sessions.begin() as session:
        return await jobs.enqueue(session, kind, payload, now=runtime.clock.now(), **kwargs)


async def _job(runtime: Runtime, job_id: int) -> Job:
    async with runtime.sessions() as session:
        job = await jobs.get_job(session, job_id)
    assert job is not None
    return job


async def _until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    async with asyncio.timeout(DEADLINE):
        while not await condition():
            await asyncio.sleep(0.01)
    assert await condition(), what


def _flaky(failures: int, calls: list[int]) -> Handler:
    async def handle(payload: dict[str, Any], ctx: JobContext) -> None:
        calls.append(ctx.attempt)
        if len(calls) <= failures:
            raise RuntimeError(f"failure {len(calls)}")

    return handle


async def test_retries_follow_the_clock_then_the_job_dies_and_can_be_requeued(
    runtime: Runtime, clock: FakeClock
) -> None:
    calls: list[int] = []
    worker = Worker(
        runtime,
        {"flaky": _flaky(failures=3, calls=calls)},
        retry_policies={"flaky": RetryPolicy(base_seconds=10, cap_seconds=15)},
        rand=lambda: 1.0,
    )
    job_id = await _enqueue(runtime, "flaky", {}, max_attempts=3)

    assert await worker.run_pending() == 1
    job = await _job(runtime, job_id)
    assert (job.status, job.attempts, job.last_error) == ("queued", 1, "RuntimeError: failure 1")
    assert job.run_at == clock.now() + timedelta(seconds=10)

    clock.advance(9.9)
    assert await worker.run_pending() == 0  # not due yet
    clock.advance(0.1)
    assert await worker.run_pending() == 1
    assert (await _job(runtime, job_id)).run_at == clock.now() + timedelta(seconds=15)  # capped

    clock.advance(15)
    assert await worker.run_pending() == 1
    job = await _job(runtime, job_id)
    assert (job.status, job.attempts, job.last_error) == ("dead", 3, "RuntimeError: failure 3")
    clock.advance(3600)
    assert await worker.run_pending() == 0

    async with runtime.sessions.begin() as session:
        assert await jobs.requeue_dead(session, job_id, now=clock.now())
    assert await worker.run_pending() == 1
    job = await _job(runtime, job_id)
    assert (job.status, job.attempts) == ("done", 1)
    assert calls == [1, 2, 3, 1]


async def test_a_permanent_error_kills_the_job_without_retry(runtime: Runtime) -> None:
    async def refuse(payload: dict[str, Any], ctx: JobContext) -> None:
        raise PermanentJobError("cannot ever work")

    job_id = await _enqueue(runtime, "refuse", {})
    worker = Worker(runtime, {"refuse": refuse})
    assert await worker.run_pending() == 1
    job = await _job(runtime, job_id)
    assert (job.status, job.attempts) == ("dead", 1)
    assert job.last_error == "PermanentJobError: cannot ever work"


async def test_the_handler_gets_the_payload_and_its_attempt(runtime: Runtime) -> None:
    seen: list[tuple[dict[str, Any], int, bool]] = []

    async def record(payload: dict[str, Any], ctx: JobContext) -> None:
        seen.append((payload, ctx.attempt, ctx.is_last_attempt))

    await _enqueue(runtime, "rec", {"to": "359888123456", "n": 3}, max_attempts=1)
    await Worker(runtime, {"rec": record}).run_pending()
    assert seen == [({"to": "359888123456", "n": 3}, 1, True)]


async def test_a_job_committed_in_this_process_wakes_an_idle_worker(runtime: Runtime) -> None:
    ran: list[int] = []
    ran_event = asyncio.Event()

    async def handle(payload: dict[str, Any], ctx: JobContext) -> None:
        ran.append(payload["n"])
        ran_event.set()

    # A poll interval far beyond the deadline: only a nudge can make the job run in time.
    worker = Worker(runtime, {"k": handle}, poll_seconds=600)
    await _enqueue(runtime, "k", {"n": 1})
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(ran_event.wait(), DEADLINE)
        ran_event.clear()
        await _enqueue(runtime, "k", {"n": 2})  # the worker is idle now
        await asyncio.wait_for(ran_event.wait(), DEADLINE)

        # A job written by someone else (another process, say) plus an explicit nudge from
        # another thread.
        async with runtime.sessions.begin() as session:
            await session.execute(
                insert(Job).values(
                    kind="k",
                    payload={"n": 3},
                    status="queued",
                    run_at=runtime.clock.now(),
                    attempts=0,
                    max_attempts=3,
                    last_error="",
                    created_at=runtime.clock.now(),
                    updated_at=runtime.clock.now(),
                )
            )
        ran_event.clear()
        threading.Thread(target=worker.nudge).start()
        await asyncio.wait_for(ran_event.wait(), DEADLINE)

        # The same through the runtime's nudge.
        async with runtime.sessions.begin() as session:
            await session.execute(
                insert(Job).values(
                    kind="k",
                    payload={"n": 4},
                    status="queued",
                    run_at=runtime.clock.now(),
                    attempts=0,
                    max_attempts=3,
                    last_error="",
                    created_at=runtime.clock.now(),
                    updated_at=runtime.clock.now(),
                )
            )
        ran_event.clear()
        runtime.wake_workers()
        await asyncio.wait_for(ran_event.wait(), DEADLINE)
    finally:
        worker.stop()
        await asyncio.wait_for(task, DEADLINE)
    assert ran == [1, 2, 3, 4]


async def test_concurrency_is_bounded_and_every_job_runs(runtime: Runtime) -> None:
    active = 0
    most = 0
    done: list[int] = []

    async def handle(payload: dict[str, Any], ctx: JobContext) -> None:
        nonlocal active, most
        active += 1
        most = max(most, active)
        for _ in range(5):
            await asyncio.sleep(0)
        active -= 1
        done.append(payload["n"])

    for n in range(20):
        await _enqueue(runtime, "k", {"n": n})
    worker = Worker(runtime, {"k": handle}, concurrency=3, poll_seconds=0.01)
    task = asyncio.create_task(worker.run())
    try:

        async def all_done() -> bool:
            return len(done) == 20

        await _until(all_done, "all 20 jobs ran")
    finally:
        worker.stop()
        await asyncio.wait_for(task, DEADLINE)
    assert sorted(done) == list(range(20))
    assert 1 < most <= 3


async def test_stop_lets_running_jobs_finish(runtime: Runtime) -> None:
    started = asyncio.Event()
    gate = asyncio.Event()

    async def slow(payload: dict[str, Any], ctx: JobContext) -> None:
        started.set()
        await gate.wait()

    job_id = await _enqueue(runtime, "slow", {})
    worker = Worker(runtime, {"slow": slow}, poll_seconds=0.01)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), DEADLINE)
    worker.stop()
    for _ in range(20):
        await asyncio.sleep(0)
    assert not task.done()  # still waiting for the job
    gate.set()
    await asyncio.wait_for(task, DEADLINE)
    assert (await _job(runtime, job_id)).status == "done"


async def test_a_job_still_running_when_patience_ends_is_given_back(runtime: Runtime) -> None:
    started = asyncio.Event()

    async def stuck(payload: dict[str, Any], ctx: JobContext) -> None:
        started.set()
        await asyncio.Event().wait()

    job_id = await _enqueue(runtime, "stuck", {})
    worker = Worker(runtime, {"stuck": stuck}, poll_seconds=0.01, drain_seconds=0.05)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), DEADLINE)
    worker.stop()
    await asyncio.wait_for(task, DEADLINE)
    job = await _job(runtime, job_id)
    assert (job.status, job.attempts, job.locked_by) == ("queued", 0, None)


async def test_a_hanging_handler_times_out_and_is_retried(runtime: Runtime) -> None:
    async def hang(payload: dict[str, Any], ctx: JobContext) -> None:
        await asyncio.Event().wait()

    job_id = await _enqueue(runtime, "hang", {})
    worker = Worker(runtime, {"hang": hang}, job_timeout_seconds=0.05)
    assert await worker.run_pending() == 1
    job = await _job(runtime, job_id)
    assert job.status == "queued"
    assert job.last_error.startswith("timed out after 0.05 s")


async def test_the_lease_of_a_long_job_keeps_moving(runtime: Runtime) -> None:
    runtime.clock = SystemClock()
    leases: list[Any] = []

    async def long(payload: dict[str, Any], ctx: JobContext) -> None:
        first = (await _job(runtime, ctx.job_id)).lease_until
        leases.append(first)

        async def extended() -> bool:
            return (await _job(runtime, ctx.job_id)).lease_until != first

        # With a 0.3 s lease the heartbeat renews it every 0.1 s.
        await _until(extended, "the heartbeat extended the lease")
        leases.append((await _job(runtime, ctx.job_id)).lease_until)

    job_id = await _enqueue(runtime, "long", {})
    worker = Worker(runtime, {"long": long}, lease_seconds=0.3)
    assert await worker.run_pending() == 1
    assert leases[1] > leases[0]
    job = await _job(runtime, job_id)
    assert (job.status, job.attempts) == ("done", 1)


async def test_handlers_with_aclose_are_closed_when_the_worker_stops(runtime: Runtime) -> None:
    class Holder:
        closed = 0

        async def __call__(self, payload: dict[str, Any], ctx: JobContext) -> None:
            return None

        async def aclose(self) -> None:
            Holder.closed += 1

    holder = Holder()
    worker = Worker(runtime, {"a": holder, "b": holder}, poll_seconds=0.01)
    task = asyncio.create_task(worker.run())
    for _ in range(5):
        await asyncio.sleep(0)
    worker.stop()
    await asyncio.wait_for(task, DEADLINE)
    assert Holder.closed == 1


async def test_housekeeping_publishes_gauges_and_purges_old_finished_jobs(
    runtime: Runtime, clock: FakeClock
) -> None:
    async def noop(payload: dict[str, Any], ctx: JobContext) -> None:
        return None

    old = await _enqueue(runtime, "k", {})
    worker = Worker(runtime, {"k": noop}, poll_seconds=0.01, metrics_interval_seconds=0)
    assert await worker.run_pending() == 1
    clock.advance(8 * 24 * 3600)
    await _enqueue(runtime, "nobody-runs-this", {}, run_at=clock.now() - timedelta(seconds=30))

    task = asyncio.create_task(worker.run())
    try:

        async def purged() -> bool:
            async with runtime.sessions() as session:
                return await jobs.get_job(session, old) is None

        await _until(purged, "the week-old finished job was deleted")
    finally:
        worker.stop()
        await asyncio.wait_for(task, DEADLINE)
    assert OUTBOX_DEPTH.labels(kind="nobody-runs-this")._value.get() == 1
    assert OUTBOX_OLDEST_AGE._value.get() == 30
