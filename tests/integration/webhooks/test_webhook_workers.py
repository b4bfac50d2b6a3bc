"""Batched webhook delivery across workers: two workers on PostgreSQL never hold one delivery
at the same time, and a worker process killed in the middle of a batch loses nothing (its
deliveries run again once their leases run out)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.factories import add_merchant, add_service

from smsgate.config import Settings
from smsgate.domain.clock import FakeClock
from smsgate.runtime import Runtime
from smsgate.services import webhooks
from smsgate.store import jobs
from smsgate.store.db import make_engine, make_sessionmaker
from smsgate.store.jobs import ClaimedJob
from smsgate.worker import WebhookSender, Worker
from smsgate.worker.handler import BatchContext

DEADLINE = 60.0


class _WatchedSender(WebhookSender):
    """The real sender, noting which worker holds which delivery while it runs it."""

    def __init__(self, runtime: Runtime, name: str, watch: dict[str, Any]) -> None:
        super().__init__(runtime, per_origin=4)
        self._name = name
        self._watch = watch

    async def run_batch(self, jobs: Sequence[ClaimedJob], batch: BatchContext) -> None:
        held: set[int] = self._watch["held"]
        ids = {job.id for job in jobs}
        self._watch["overlaps"] += len(held & ids)
        held |= ids
        self._watch["runs"].update(dict.fromkeys(ids, self._name))
        try:
            await super().run_batch(jobs, batch)
        finally:
            held -= ids


@pytest.mark.postgres
@pytest.mark.slow
async def test_two_workers_deliver_each_callback_once(pg_database_url: str, receiver: Any) -> None:
    await receiver.listen()
    engines = [make_engine(pg_database_url) for _ in range(3)]
    setup = make_sessionmaker(engines[2])
    now = datetime.now(UTC)
    async with setup.begin() as session:
        await add_merchant(session, 1)
        await add_service(session, 201, merchant_id=1)
    async with setup.begin() as session:
        event_ids = [
            await webhooks.emit(
                session,
                merchant_id=1,
                service_id=201,
                event_type="message.dlr",
                url=receiver.url(),
                payload={"id": str(n)},
                now=now,
            )
            for n in range(400)
        ]
    watch: dict[str, Any] = {"held": set(), "overlaps": 0, "runs": {}}
    workers = []
    for name, engine in zip(("w0", "w1"), engines, strict=False):
        runtime = Runtime(
            settings=Settings(database_url=pg_database_url, webhook_allow_private=True),
            engine=engine,
            sessions=make_sessionmaker(engine),
        )
        sender = _WatchedSender(runtime, name, watch)
        workers.append(
            Worker(
                runtime,
                {webhooks.DELIVER_KIND: sender},
                worker_id=name,
                batch_size=25,
                max_batched=50,
                poll_seconds=0.01,
            )
        )
    tasks = [asyncio.create_task(worker.run()) for worker in workers]
    try:
        async with asyncio.timeout(DEADLINE):
            while len(receiver.delivered()) < len(event_ids):
                await asyncio.sleep(0.05)
    finally:
        for worker in workers:
            worker.stop()
        await asyncio.gather(*tasks)
    async with setup() as session:
        rows = await jobs.list_jobs(session, limit=1000)
    for engine in engines:
        await engine.dispose()

    assert watch["overlaps"] == 0
    assert Counter(r.headers["webhook-id"] for r in receiver.requests) == dict.fromkeys(
        event_ids, 1
    )
    assert {(job.status, job.attempts) for job in rows} == {("done", 1)}
    assert set(watch["runs"].values()) == {"w0", "w1"}  # both took part


@pytest.mark.slow
async def test_a_killed_worker_s_batch_is_delivered_after_its_lease(
    runtime: Runtime, receiver: Any, clock: FakeClock, database_url: str, tmp_path: Path
) -> None:
    await receiver.listen()
    receiver.stall = asyncio.Event()  # the victim's requests hang until it is dead
    async with runtime.sessions.begin() as session:
        event_ids = [
            await webhooks.emit(
                session,
                merchant_id=1,
                service_id=201,
                event_type="message.dlr",
                url=receiver.url(),
                payload={"id": str(n)},
                now=clock.now(),
            )
            for n in range(30)
        ]
    log = (tmp_path / "victim.log").open("w")
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "smsgate.worker",
            "--database-url",
            database_url,
            "--worker-id",
            "victim",
            "--lease-seconds",
            "1",
            "--poll-seconds",
            "0.05",
        ],
        env=dict(os.environ, SMSGATE_WEBHOOK_ALLOW_PRIVATE="true"),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(DEADLINE):
            while receiver.connections < 4 or await _running(runtime) < len(event_ids):
                assert child.poll() is None, (tmp_path / "victim.log").read_text()
                await asyncio.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=DEADLINE)
        log.close()
        receiver.stall.set()
    receiver.stall = None

    async with runtime.sessions() as session:
        held = await jobs.list_jobs(session, kind=webhooks.DELIVER_KIND)
    assert {(job.status, job.locked_by, job.attempts) for job in held} == {("running", "victim", 1)}
    lease_end = max(job.lease_until for job in held if job.lease_until is not None)

    survivor = Worker(runtime, {webhooks.DELIVER_KIND: WebhookSender(runtime)}, lease_seconds=1)
    try:
        clock.set(lease_end - timedelta(milliseconds=1))
        assert await survivor.run_pending() == 0  # still the victim's
        clock.set(lease_end + timedelta(milliseconds=1))
        assert await survivor.run_pending() == len(event_ids)
    finally:
        await survivor.aclose()

    # At least once: each arrived, those on the wire when the victim died twice.
    arrived = Counter(r.headers["webhook-id"] for r in receiver.requests)
    assert set(arrived) == set(event_ids)
    async with runtime.sessions() as session:
        finished = await jobs.list_jobs(session, kind=webhooks.DELIVER_KIND)
        for event_id in event_ids:
            event = await webhooks.get_event(session, event_id)
            assert event is not None
            assert (event.status, event.attempts) == ("delivered", 1)  # the victim logged none
    assert {(job.status, job.attempts) for job in finished} == {("done", 2)}


async def _running(runtime: Runtime) -> int:
    async with runtime.sessions() as session:
        rows = await jobs.list_jobs(session, status="running")
    return len(rows)
