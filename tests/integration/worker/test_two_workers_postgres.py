"""Two workers with their own engines race over 500 jobs on PostgreSQL: every job runs
exactly once and never twice at the same time."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import text

from smsgate.config import Settings
from smsgate.runtime import Runtime
from smsgate.store import jobs
from smsgate.store.db import make_engine, make_sessionmaker
from smsgate.worker import JobContext, Worker

JOBS = 500
DEADLINE = 120.0

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


async def test_two_workers_run_each_job_exactly_once(pg_database_url: str) -> None:
    engines = [make_engine(pg_database_url) for _ in range(3)]
    setup = make_sessionmaker(engines[2])
    async with setup.begin() as session:
        await session.execute(
            text("CREATE TABLE job_runs (n integer NOT NULL, worker text NOT NULL)")
        )
    async with setup.begin() as session:
        for n in range(JOBS):
            await jobs.enqueue(session, "race", {"n": n}, now=_now())

    running: set[int] = set()
    overlaps: list[int] = []

    async def handle(payload: dict[str, Any], ctx: JobContext) -> None:
        n = payload["n"]
        if n in running:
            overlaps.append(n)
        running.add(n)
        try:
            async with ctx.runtime.sessions.begin() as session:
                await session.execute(
                    text("INSERT INTO job_runs (n, worker) VALUES (:n, :w)"),
                    {"n": n, "w": ctx.job.worker_id},
                )
            await asyncio.sleep(0)
        finally:
            running.discard(n)

    workers = []
    for index, engine in enumerate(engines[:2]):
        runtime = Runtime(
            settings=Settings(database_url=pg_database_url),
            engine=engine,
            sessions=make_sessionmaker(engine),
        )
        workers.append(
            Worker(
                runtime,
                {"race": handle},
                worker_id=f"w{index}",
                concurrency=8,
                poll_seconds=0.01,
                lease_seconds=30,
            )
        )
    tasks = [asyncio.create_task(worker.run()) for worker in workers]
    try:
        async with asyncio.timeout(DEADLINE):
            while await _count(setup, "SELECT count(*) FROM jobs WHERE status = 'done'") < JOBS:
                await asyncio.sleep(0.05)
    finally:
        for worker in workers:
            worker.stop()
        await asyncio.gather(*tasks)

    async with setup() as session:
        runs = (await session.execute(text("SELECT n, worker FROM job_runs"))).all()
        attempts = (await session.execute(text("SELECT attempts, status FROM jobs"))).all()
    for engine in engines:
        await engine.dispose()

    assert overlaps == []
    per_job = Counter(n for n, _ in runs)
    assert len(per_job) == JOBS
    assert set(per_job.values()) == {1}
    per_worker = Counter(worker for _, worker in runs)
    assert set(per_worker) == {"w0", "w1"}, per_worker  # both took part
    assert set(attempts) == {(1, "done")}


async def _count(sessions: Any, sql: str) -> int:
    async with sessions() as session:
        return int((await session.execute(text(sql))).scalar_one())


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
