"""A worker process killed with SIGKILL in the middle of a job loses nothing: once the lease
runs out, another worker runs the job again and completes it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from smsgate.domain.clock import FakeClock
from smsgate.runtime import Runtime
from smsgate.store import jobs
from smsgate.worker import JobContext, Worker

HERE = Path(__file__).parent
STARTUP_DEADLINE = 30.0  # seconds for the child to start, claim and report


@pytest.mark.slow
async def test_a_job_of_a_killed_worker_runs_again_after_its_lease(
    runtime: Runtime, clock: FakeClock, database_url: str, tmp_path: Path
) -> None:
    # The child runs on the real clock; ours starts there too and then jumps.
    clock.set(_real_now())
    marker = tmp_path / "claimed"
    async with runtime.sessions.begin() as session:
        job_id = await jobs.enqueue(session, "test.block", {"marker": str(marker)}, now=clock.now())

    log = (tmp_path / "child.log").open("w")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), *sys.path]))
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "smsgate.worker",
            "--database-url",
            database_url,
            "--no-default-handlers",
            "--handlers",
            "killable_handlers:handlers",
            "--worker-id",
            "victim",
            "--lease-seconds",
            "1",
            "--poll-seconds",
            "0.05",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(STARTUP_DEADLINE):
            while not marker.exists():
                assert child.poll() is None, (tmp_path / "child.log").read_text()
                await asyncio.sleep(0.05)
        assert marker.read_text() == f"{job_id} 1"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=STARTUP_DEADLINE)
        log.close()
    assert child.returncode == -signal.SIGKILL

    async with runtime.sessions() as session:
        job = await jobs.get_job(session, job_id)
    assert job is not None
    assert (job.status, job.locked_by, job.attempts) == ("running", "victim", 1)
    assert job.lease_until is not None

    completed: list[tuple[int, int]] = []

    async def finish(payload: dict[str, Any], ctx: JobContext) -> None:
        completed.append((ctx.job_id, ctx.attempt))

    survivor = Worker(runtime, {"test.block": finish}, worker_id="survivor", lease_seconds=1)
    # Still leased to the dead worker: nobody may take it yet.
    clock.set(job.lease_until - timedelta(milliseconds=1))
    assert await survivor.run_pending() == 0
    # The lease has run out: the job runs again and completes.
    clock.set(job.lease_until + timedelta(milliseconds=1))
    assert await survivor.run_pending() == 1
    assert completed == [(job_id, 2)]
    async with runtime.sessions() as session:
        job = await jobs.get_job(session, job_id)
    assert job is not None
    assert (job.status, job.attempts, job.locked_by) == ("done", 2, None)


def _real_now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
