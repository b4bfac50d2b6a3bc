"""Webhook deliveries in batches, to a real HTTP receiver on 127.0.0.1: many callbacks per
claim, some refused by the receiver; each accepted callback arrives once, refused ones come
back after their backoff, every attempt is logged, and a stopping worker gives its batch
back."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

from smsgate.domain.clock import FakeClock
from smsgate.runtime import Runtime
from smsgate.services import webhooks
from smsgate.store import jobs
from smsgate.store.models import Job
from smsgate.worker import JobContext, WebhookSender, Worker

CALLBACKS = 120
REFUSED = 30


async def _emit_many(runtime: Runtime, url: str, count: int) -> list[str]:
    async with runtime.sessions.begin() as session:
        return [
            await webhooks.emit(
                session,
                merchant_id=1,
                service_id=201,
                event_type="message.dlr",
                url=url,
                payload={"id": str(n), "status": "delivered"},
                now=runtime.clock.now(),
            )
            for n in range(count)
        ]


async def _jobs(runtime: Runtime) -> list[Job]:
    async with runtime.sessions() as session:
        return list(await jobs.list_jobs(session, kind=webhooks.DELIVER_KIND, limit=10_000))


def _batch_worker(runtime: Runtime, **options: Any) -> Worker:
    sender = WebhookSender(runtime, per_origin=4)
    return Worker(
        runtime, {webhooks.DELIVER_KIND: sender}, batch_size=50, rand=lambda: 1.0, **options
    )


async def test_a_batch_with_refusals_delivers_each_once_and_retries_the_refused(
    runtime: Runtime, receiver: Any, clock: FakeClock
) -> None:
    await receiver.listen()
    event_ids = await _emit_many(runtime, receiver.url(), CALLBACKS)
    receiver.statuses = [500] * REFUSED  # the first 30 requests, whichever they are
    worker = _batch_worker(runtime)
    try:
        assert await worker.run_pending() == CALLBACKS  # batches of 50, 50 and 20
        assert await worker.run_pending() == 0  # the refused ones wait for their backoff
        refused = {r.headers["webhook-id"] for r in receiver.requests if r.status == 500}
        assert len(refused) == REFUSED
        queued = [job for job in await _jobs(runtime) if job.status == "queued"]
        assert {job.payload["event_id"] for job in queued} == refused
        # Full jitter with rand = 1: exactly the first ceiling, 15 s.
        assert {job.run_at for job in queued} == {clock.now() + timedelta(seconds=15)}
        assert {(job.attempts, job.last_error) for job in queued} == {(1, "HTTP 500")}
        clock.advance(15)
        assert await worker.run_pending() == REFUSED
        assert await worker.run_pending() == 0
    finally:
        await worker.aclose()

    delivered = Counter(r.headers["webhook-id"] for r in receiver.delivered())
    assert delivered == dict.fromkeys(event_ids, 1)
    assert len(receiver.requests) == CALLBACKS + REFUSED
    # Keep-alive: at most four connections to the one host, reused across batches.
    assert receiver.connections <= 4
    async with runtime.sessions() as session:
        for event_id in event_ids:
            event = await webhooks.get_event(session, event_id)
            assert event is not None
            log = [a.status_code for a in await webhooks.list_attempts(session, event_id)]
            if event_id in refused:
                assert (event.status, event.attempts, log) == ("delivered", 2, [500, 200])
                assert event.delivered_at == clock.now()
            else:
                assert (event.status, event.attempts, log) == ("delivered", 1, [200])
    assert {(job.status, job.locked_by) for job in await _jobs(runtime)} == {("done", None)}


async def test_a_slow_merchant_holds_back_only_its_own_callbacks(
    runtime: Runtime, receiver: Any
) -> None:
    """Outcomes are recorded as they end: the fast receiver's callbacks are done while the
    stalled one's are still in flight."""
    await receiver.listen()
    slow = await _slow_receiver()
    try:
        fast_ids = await _emit_many(runtime, receiver.url(), 10)
        slow_ids = await _emit_many(runtime, slow.url, 2)
        sender = WebhookSender(runtime, per_origin=4, flush_seconds=0.05)
        worker = Worker(runtime, {webhooks.DELIVER_KIND: sender}, batch_size=50)
        run = asyncio.create_task(worker.run_pending())
        try:
            async with asyncio.timeout(10):
                while len(slow.arrived) < 2 or await _done(runtime) < len(fast_ids):
                    await asyncio.sleep(0.02)
            assert not run.done()
            slow.release.set()
            assert await run == 12
        finally:
            slow.release.set()
            await worker.aclose()
    finally:
        await slow.close()
    assert await _done(runtime) == 12
    assert sorted(slow.arrived) == sorted(slow_ids)


async def test_a_worker_stopped_mid_batch_gives_the_unsent_jobs_back(
    runtime: Runtime, receiver: Any
) -> None:
    await receiver.listen()
    receiver.stall = asyncio.Event()
    await _emit_many(runtime, receiver.url(), 20)
    worker = _batch_worker(runtime, drain_seconds=0.2, poll_seconds=0.01)
    task = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(10):
            while receiver.connections < 4:
                await asyncio.sleep(0.01)
        worker.stop()
        await task
    finally:
        receiver.stall.set()
    rows = await _jobs(runtime)
    # Cancelled in flight (four of them were on the wire: they are sent again, at least
    # once), or never started: all back in the queue, due now, the attempt not counted.
    assert {(job.status, job.attempts, job.locked_by) for job in rows} == {("queued", 0, None)}


# --- helpers -----------------------------------------------------------------------------


class _SlowReceiver:
    """Reads a request, notes its event id, and answers 200 only once ``release`` is set."""

    def __init__(self) -> None:
        self.arrived: list[str] = []
        self.release = asyncio.Event()
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/slow"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = dict(
                    line.split(": ", 1) for line in head.decode().split("\r\n")[1:] if line
                )
                await reader.readexactly(int(headers.get("content-length", "0")))
                self.arrived.append(headers["webhook-id"])
                await self.release.wait()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def _slow_receiver() -> _SlowReceiver:
    slow = _SlowReceiver()
    slow.server = await asyncio.start_server(slow.serve, "127.0.0.1", 0)
    return slow


async def _done(runtime: Runtime) -> int:
    return sum(job.status == "done" for job in await _jobs(runtime))


async def test_the_sender_also_works_as_a_single_job_handler(
    runtime: Runtime, receiver: Any, clock: FakeClock
) -> None:
    await receiver.listen()
    (event_id,) = await _emit_many(runtime, receiver.url(), 1)
    receiver.statuses = [503]
    sender = WebhookSender(runtime)

    async def one_at_a_time(payload: dict[str, Any], ctx: JobContext) -> None:
        await sender(payload, ctx)

    worker = Worker(runtime, {webhooks.DELIVER_KIND: one_at_a_time}, rand=lambda: 1.0)
    try:
        assert await worker.run_pending() == 1
        clock.advance(15)
        assert await worker.run_pending() == 1
    finally:
        await sender.aclose()
    async with runtime.sessions() as session:
        event = await webhooks.get_event(session, event_id)
        log = [a.status_code for a in await webhooks.list_attempts(session, event_id)]
    assert event is not None
    assert (event.status, event.attempts, log) == ("delivered", 2, [503, 200])
    ((job_status, attempts),) = {(job.status, job.attempts) for job in await _jobs(runtime)}
    assert (job_status, attempts) == ("done", 2)
