"""The worker: claims due outbox jobs and runs their handlers, many at once.

One loop claims as many jobs as there are free slots (``concurrency``), starts each as a task,
then sleeps until the poll interval passes or something wakes it: a job committed in this
process (``store.jobs.on_jobs_committed``, ``Runtime.jobs_nudge``, ``Worker.nudge``) or a slot
freed while more work may be waiting. Polling stays as the safety net for jobs committed by
other processes.

Leases: a claimed job is ours until ``lease_until``; while its handler runs, a heartbeat pushes
the lease forward every third of ``lease_seconds``. A worker that dies stops the heartbeat and
its jobs become claimable when the lease runs out, so a job is lost never, but may run twice
(handlers are idempotent). ``job_timeout_seconds`` bounds a handler that hangs.

Batch handlers (``handler.BatchHandler``, the webhook sender): their kinds are claimed up to
``batch_size`` jobs per statement and handed over as one batch (worker/batches.py); up to
``max_batched`` such jobs are in hand at once, so the next batch is claimed while the last
one is still sending.

Receipts stored before their part was written are applied by a sweep that runs beside the
loop every ``receipt_sweep_seconds`` (worker/receipt_sweep.py; ``receipt_sweep_seconds=0``
leaves it to other workers).

Stopping: ``stop()`` ends claiming; ``run()`` returns once the running jobs finish, or after
``drain_seconds``, when the rest are cancelled and given back to the queue (``release``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Callable, Collection, Mapping
from datetime import timedelta
from typing import Protocol, runtime_checkable

from smsgate.domain.backoff import DEFAULT_RETRY, RetryPolicy
from smsgate.runtime import Runtime
from smsgate.store import jobs
from smsgate.store.jobs import ClaimedJob
from smsgate.worker.batches import Batch, run_batch
from smsgate.worker.handler import BatchHandler, Handler, JobContext, PermanentJobError
from smsgate.worker.receipt_sweep import ReceiptSweep
from smsgate.worker.webhook_sender import DELIVER_KIND, WEBHOOK_RETRY, WebhookSender

log = logging.getLogger("smsgate.worker")


@runtime_checkable
class _Closable(Protocol):
    async def aclose(self) -> None: ...


def default_handlers(runtime: Runtime) -> dict[str, Handler]:
    """The handlers this package provides: ``webhook.deliver``.

    The composition root adds the other kinds (``mt.submit``, ``rebill``, ...) to this
    mapping before building the ``Worker``; see docs/worker.md.
    """
    return {DELIVER_KIND: WebhookSender(runtime)}


def default_retry_policies() -> dict[str, RetryPolicy]:
    return {DELIVER_KIND: WEBHOOK_RETRY}


def new_worker_id() -> str:
    """Host, process and a random suffix: unique even when a pid is reused after a crash."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{secrets.token_hex(4)}"


class Worker:
    def __init__(
        self,
        runtime: Runtime,
        handlers: Mapping[str, Handler | BatchHandler],
        *,
        worker_id: str | None = None,
        concurrency: int | None = None,
        batch_size: int = 200,
        max_batched: int | None = None,
        batch_linger_seconds: float = 0.05,
        poll_seconds: float | None = None,
        lease_seconds: float | None = None,
        retry_policies: Mapping[str, RetryPolicy] | None = None,
        job_timeout_seconds: float | None = None,
        drain_seconds: float = 25.0,
        metrics_interval_seconds: float = 15.0,
        keep_done_seconds: float | None = 7 * 24 * 3600.0,
        receipt_sweep_seconds: float | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        settings = runtime.settings
        self._runtime = runtime
        self._handlers = dict(handlers)
        # A handler that can take batches gets them (the webhook sender can do both).
        self._batch_handlers: dict[str, BatchHandler] = {}
        self._single_handlers: dict[str, Handler] = {}
        for kind, handler in handlers.items():
            if isinstance(handler, BatchHandler):
                self._batch_handlers[kind] = handler
            else:
                self._single_handlers[kind] = handler
        self._single_kinds = list(self._single_handlers)
        self.worker_id = worker_id or new_worker_id()
        self._concurrency = concurrency or settings.worker_concurrency
        self._poll_seconds = settings.worker_poll_seconds if poll_seconds is None else poll_seconds
        self._lease_seconds = lease_seconds or settings.job_lease_seconds
        self._retry = {**default_retry_policies(), **(retry_policies or {})}
        self._job_timeout = job_timeout_seconds
        self._drain_seconds = drain_seconds
        self._metrics_interval = metrics_interval_seconds
        self._keep_done = keep_done_seconds
        self._rand = rand
        if self._concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._batch_size = batch_size
        self._max_batched = max(max_batched or 3 * batch_size, batch_size)
        self._batched = 0  # jobs of batch kinds claimed and not finished
        self._batch_tasks: set[asyncio.Task[None]] = set()
        self._batches_saturated = False
        self._batch_linger = batch_linger_seconds
        self._last_batch_claim = -batch_linger_seconds
        self._linger_timer: asyncio.TimerHandle | None = None
        self._refill_batch = max(1, self._concurrency // 4)
        if self._lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._saturated = False
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        sweep_seconds = (
            settings.receipt_sweep_seconds
            if receipt_sweep_seconds is None
            else receipt_sweep_seconds
        )
        self.receipt_sweep = (
            ReceiptSweep(
                runtime,
                interval_seconds=sweep_seconds,
                window_seconds=settings.receipt_sweep_window_seconds,
            )
            if sweep_seconds > 0
            else None
        )

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self._handlers)

    @property
    def running_jobs(self) -> int:
        return len(self._tasks) + self._batched

    # --- control ---------------------------------------------------------------------------

    def nudge(self) -> None:
        """Look for jobs now instead of at the next poll. Safe from any thread."""
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or loop.is_closed():
            return
        try:
            if asyncio.get_running_loop() is loop:
                wake.set()
                return
        except RuntimeError:
            pass
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(wake.set)

    def stop(self) -> None:
        """Stop claiming; ``run()`` returns after the running jobs end."""
        self._stopping = True
        self.nudge()

    # --- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Claim and run jobs until ``stop()``; then drain and close the handlers."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        unsubscribe = jobs.on_jobs_committed(self.nudge)
        watcher = asyncio.create_task(self._watch_runtime_nudge())
        sweep = self.receipt_sweep
        sweeping = asyncio.create_task(sweep.run()) if sweep is not None else None
        last_metrics = 0.0
        log.info("worker %s started: kinds %s", self.worker_id, sorted(self._handlers))
        try:
            while not self._stopping:
                self._wake.clear()
                free = self._concurrency - len(self._tasks)
                if self._single_kinds and free > 0:
                    claimed = await self._claim(self._single_kinds, free)
                    for job in claimed:
                        self._start(job)
                    # A full batch suggests more is due: come back as soon as a slot frees.
                    self._saturated = len(claimed) == free
                room = min(self._batch_size, self._max_batched - self._batched)
                # Backed up: wait for room for a whole batch (few, large transactions).
                if (
                    self._batch_handlers
                    and room > 0
                    and not self._batch_room_short(room)
                    and not self._lingering()
                ):
                    self._last_batch_claim = time.monotonic()
                    claimed = await self._claim(self._batch_handlers.keys(), room)
                    for batch_jobs in _by_kind(claimed):
                        self._start_batch(batch_jobs)
                    self._batches_saturated = len(claimed) == room
                    if self._batches_saturated:
                        self._batch_jobs_finished(0)  # room for one more batch: claim it now
                if time.monotonic() - last_metrics >= self._metrics_interval:
                    last_metrics = time.monotonic()
                    await self._housekeeping()
                if self._stopping:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll_seconds)
        finally:
            unsubscribe()
            if self._linger_timer is not None:
                self._linger_timer.cancel()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            if sweep is not None and sweeping is not None:
                sweep.stop()
                await sweeping
            await self._drain()
            await self._close_handlers()
            log.info("worker %s stopped", self.worker_id)

    async def run_pending(self, *, max_rounds: int = 1000) -> int:
        """Run every job due now (by the runtime clock), batch by batch, and return how many
        ran. For tests with a fake clock and for one-shot runs; ``run()`` is the service."""
        total = 0
        for _ in range(max_rounds):
            single = await self._claim(self._single_kinds, self._concurrency)
            batched = await self._claim(self._batch_handlers.keys(), self._batch_size)
            if not single and not batched:
                break
            self._batched += len(batched)
            await asyncio.gather(
                *(self._execute(job) for job in single),
                *(self._execute_batch(jobs) for jobs in _by_kind(batched)),
            )
            total += len(single) + len(batched)
        return total

    async def aclose(self) -> None:
        """Close what the handlers hold (HTTP clients); ``run()`` does it on its way out."""
        await self._close_handlers()

    # --- batches -----------------------------------------------------------------------------

    def _start_batch(self, claimed: list[ClaimedJob]) -> None:
        self._batched += len(claimed)  # now, not when the task starts: the next claim counts it
        task = asyncio.create_task(self._execute_batch(claimed), name=f"batch-{claimed[0].id}")
        self._batch_tasks.add(task)
        task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._batch_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("batch task crashed", exc_info=task.exception())

    async def _execute_batch(self, claimed: list[ClaimedJob]) -> None:
        kind = claimed[0].kind
        batch = Batch(
            self._runtime,
            claimed,
            policy=self._retry.get(kind, DEFAULT_RETRY),
            rand=self._rand,
            on_finished=self._batch_jobs_finished,
        )
        await run_batch(self._batch_handlers[kind], batch, claimed, self._lease_seconds)

    def _batch_room_short(self, room: int) -> bool:
        return self._batches_saturated and room < self._batch_size

    def _lingering(self) -> bool:
        """Not backed up and a batch was claimed moments ago: let the jobs that trickle in
        (a commit wakes us for each) gather for ``batch_linger_seconds`` into one batch
        rather than a batch, a read and a transaction for every few jobs."""
        if self._batches_saturated or self._loop is None:
            return False
        wait = self._last_batch_claim + self._batch_linger - time.monotonic()
        if wait <= 0:
            return False
        if self._linger_timer is None or self._linger_timer.cancelled():
            self._linger_timer = self._loop.call_later(wait, self._linger_over)
        return True

    def _linger_over(self) -> None:
        self._linger_timer = None
        if self._wake is not None:
            self._wake.set()

    def _batch_jobs_finished(self, count: int) -> None:
        self._batched -= count
        room = self._max_batched - self._batched
        if self._batches_saturated and self._wake is not None and room >= self._batch_size:
            self._wake.set()

    # --- one job -----------------------------------------------------------------------------

    def _start(self, job: ClaimedJob) -> None:
        task = asyncio.create_task(self._execute(job), name=f"job-{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._job_done)

    def _job_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("job task crashed", exc_info=task.exception())
        # When work is backed up, claim again once a quarter of the slots are free: one claim
        # per finished job would double the transactions per job.
        free = self._concurrency - len(self._tasks)
        if self._saturated and self._wake is not None and free >= self._refill_batch:
            self._wake.set()

    async def _execute(self, job: ClaimedJob) -> None:
        handler = self._single_handlers[job.kind]
        ctx = JobContext(job=job, runtime=self._runtime)
        heartbeat = asyncio.create_task(self._heartbeat(job))
        error: str | None = None
        permanent = False
        try:
            if self._job_timeout is None:
                await handler(job.payload, ctx)
            else:
                async with asyncio.timeout(self._job_timeout):
                    await handler(job.payload, ctx)
        except PermanentJobError as exc:
            error, permanent = _describe(exc), True
        except asyncio.CancelledError:
            # Only a stop that ran out of patience cancels a job: hand it back untouched.
            heartbeat.cancel()
            await self._record(job, release=True)
            raise
        except TimeoutError as exc:
            error = f"timed out after {self._job_timeout} s: {_describe(exc)}"
        except Exception as exc:
            error = _describe(exc)
            log.warning("job %s (%s) attempt %s failed: %s", job.id, job.kind, job.attempt, error)
        finally:
            heartbeat.cancel()
        await self._record(job, error=error, permanent=permanent)

    async def _record(
        self,
        job: ClaimedJob,
        *,
        error: str | None = None,
        permanent: bool = False,
        release: bool = False,
    ) -> None:
        now = self._runtime.clock.now()
        try:
            async with self._runtime.sessions.begin() as session:
                if release:
                    ok = await jobs.release(session, job, now=now)
                elif error is None:
                    ok = await jobs.complete(session, job, now=now)
                else:
                    status = await jobs.fail(
                        session,
                        job,
                        error=error,
                        now=now,
                        permanent=permanent,
                        policy=self._retry.get(job.kind, DEFAULT_RETRY),
                        rand=self._rand,
                    )
                    ok = status is not None
                    if status == jobs.DEAD:
                        log.error("job %s (%s) is dead: %s", job.id, job.kind, error)
        except Exception:
            # The lease runs out and the job runs again: at least once, never lost.
            log.exception("could not record the outcome of job %s", job.id)
            return
        if not ok:
            log.warning(
                "job %s (%s): lease lost before its outcome was recorded; "
                "another claim owns it now",
                job.id,
                job.kind,
            )

    async def _heartbeat(self, job: ClaimedJob) -> None:
        interval = self._lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                async with self._runtime.sessions.begin() as session:
                    extended = await jobs.extend_lease(
                        session,
                        job,
                        lease_seconds=self._lease_seconds,
                        now=self._runtime.clock.now(),
                    )
            except Exception:
                log.exception("could not extend the lease of job %s", job.id)
                continue
            if extended is None:
                log.warning("job %s (%s): lease lost while running", job.id, job.kind)
                return

    # --- helpers -----------------------------------------------------------------------------

    async def _claim(self, kinds: Collection[str], limit: int) -> list[ClaimedJob]:
        if not kinds:
            return []
        try:
            async with self._runtime.sessions.begin() as session:
                return await jobs.claim(
                    session,
                    worker_id=self.worker_id,
                    kinds=kinds,
                    limit=limit,
                    lease_seconds=self._lease_seconds,
                    now=self._runtime.clock.now(),
                )
        except Exception:
            log.exception("claiming jobs failed; trying again at the next poll")
            return []

    async def _housekeeping(self) -> None:
        """Outbox gauges, and finished jobs older than ``keep_done_seconds`` deleted."""
        now = self._runtime.clock.now()
        try:
            async with self._runtime.sessions() as session:
                stats = await jobs.outbox_stats(session, now=now)
            jobs.publish_outbox_metrics(stats)
            if self._keep_done is not None:
                async with self._runtime.sessions.begin() as session:
                    await jobs.purge_done(
                        session, older_than=now - timedelta(seconds=self._keep_done)
                    )
        except Exception:
            log.exception("outbox housekeeping failed")

    async def _watch_runtime_nudge(self) -> None:
        # Runtime.wake_workers(): code that commits work without store.jobs.enqueue (or from
        # outside a transaction) can still wake us.
        while True:
            await self._runtime.jobs_nudge.wait(3600.0)
            self.nudge()

    async def _drain(self) -> None:
        running = self._tasks | self._batch_tasks
        if not running:
            return
        _, pending = await asyncio.wait(running, timeout=self._drain_seconds)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("%d jobs did not finish in time and were given back", len(pending))
            await asyncio.wait(pending)

    async def _close_handlers(self) -> None:
        seen: set[int] = set()
        for handler in self._handlers.values():
            if id(handler) in seen or not isinstance(handler, _Closable):
                continue
            seen.add(id(handler))
            try:
                await handler.aclose()
            except Exception:
                log.exception("closing a job handler failed")


def _by_kind(claimed: list[ClaimedJob]) -> list[list[ClaimedJob]]:
    groups: dict[str, list[ClaimedJob]] = {}
    for job in claimed:
        groups.setdefault(job.kind, []).append(job)
    return list(groups.values())


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
