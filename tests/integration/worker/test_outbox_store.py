"""The outbox in store/jobs.py on SQLite and PostgreSQL: enqueue, claim, leases, outcomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from smsgate.domain.backoff import RetryPolicy
from smsgate.metrics import OUTBOX_DEPTH, OUTBOX_OLDEST_AGE
from smsgate.store import jobs
from smsgate.store.models import Job

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

Sessions = async_sessionmaker[AsyncSession]


async def _enqueue(sessions: Sessions, kind: str = "k", **kwargs: object) -> int:
    async with sessions.begin() as session:
        return await jobs.enqueue(session, kind, {"n": 1}, now=kwargs.pop("now", T0), **kwargs)  # type: ignore[arg-type]


async def _claim(
    sessions: Sessions,
    *,
    now: datetime = T0,
    worker: str = "w1",
    kinds: tuple[str, ...] = ("k",),
    limit: int = 10,
    lease: float = 30.0,
) -> list[jobs.ClaimedJob]:
    async with sessions.begin() as session:
        return await jobs.claim(
            session, worker_id=worker, kinds=kinds, limit=limit, lease_seconds=lease, now=now
        )


async def _job(sessions: Sessions, job_id: int) -> Job:
    async with sessions() as session:
        job = await jobs.get_job(session, job_id)
    assert job is not None
    return job


async def test_enqueue_belongs_to_the_callers_transaction(sessionmaker: Sessions) -> None:
    async with sessionmaker() as session, session.begin():
        await jobs.enqueue(session, "k", {"a": "b"}, now=T0)
        await session.rollback()
    async with sessionmaker() as session:
        assert (await session.execute(select(func.count()).select_from(Job))).scalar_one() == 0

    job_id = await _enqueue(sessionmaker)
    job = await _job(sessionmaker, job_id)
    assert (job.status, job.kind, job.payload, job.attempts, job.run_at) == (
        "queued",
        "k",
        {"n": 1},
        0,
        T0,
    )
    assert job.max_attempts == jobs.DEFAULT_MAX_ATTEMPTS


async def test_dedupe_key_makes_a_job_exist_once(sessionmaker: Sessions) -> None:
    first = await _enqueue(sessionmaker, dedupe_key="rebill:7:2026-03")
    second = await _enqueue(sessionmaker, dedupe_key="rebill:7:2026-03")
    other = await _enqueue(sessionmaker, dedupe_key="rebill:7:2026-04")
    assert first == second != other
    async with sessionmaker.begin() as session:
        # Twice within one transaction too.
        a = await jobs.enqueue(session, "k", {}, now=T0, dedupe_key="x")
        b = await jobs.enqueue(session, "k", {}, now=T0, dedupe_key="x")
    assert a == b
    counts = await _counts(sessionmaker)
    assert counts == {("queued", "k"): 3}


async def _counts(sessions: Sessions) -> dict[tuple[str, str], int]:
    async with sessions() as session:
        return await jobs.count_jobs(session)


async def test_claim_takes_due_jobs_of_its_kinds_oldest_first(sessionmaker: Sessions) -> None:
    late = await _enqueue(sessionmaker, run_at=T0 + timedelta(seconds=5))
    early = await _enqueue(sessionmaker, run_at=T0 - timedelta(seconds=5))
    now_job = await _enqueue(sessionmaker)
    await _enqueue(sessionmaker, kind="other")

    claimed = await _claim(sessionmaker, limit=1)
    assert [job.id for job in claimed] == [early]
    claimed = await _claim(sessionmaker, limit=10)
    assert [job.id for job in claimed] == [now_job]
    assert claimed[0].attempt == 1
    assert claimed[0].worker_id == "w1"
    assert claimed[0].lease_until == T0 + timedelta(seconds=30)
    assert await _claim(sessionmaker) == []  # `late` is not due, `other` not ours

    claimed = await _claim(sessionmaker, now=T0 + timedelta(seconds=5))
    assert [job.id for job in claimed] == [late]
    job = await _job(sessionmaker, late)
    assert (job.status, job.locked_by, job.attempts) == ("running", "w1", 1)


async def test_an_expired_lease_makes_the_job_claimable_and_the_old_claim_powerless(
    sessionmaker: Sessions,
) -> None:
    job_id = await _enqueue(sessionmaker)
    (first,) = await _claim(sessionmaker, worker="w1", lease=10)
    assert await _claim(sessionmaker, worker="w2", now=T0 + timedelta(seconds=9)) == []

    (second,) = await _claim(sessionmaker, worker="w2", now=T0 + timedelta(seconds=11))
    assert (second.id, second.attempt, second.worker_id) == (job_id, 2, "w2")

    # The first worker wakes up late: nothing it says changes the job.
    async with sessionmaker.begin() as session:
        assert not await jobs.complete(session, first, now=T0 + timedelta(seconds=12))
        assert await jobs.fail(session, first, error="x", now=T0) is None
        assert await jobs.extend_lease(session, first, lease_seconds=60, now=T0) is None
        assert not await jobs.release(session, first, now=T0)
    job = await _job(sessionmaker, job_id)
    assert (job.status, job.locked_by, job.attempts) == ("running", "w2", 2)

    async with sessionmaker.begin() as session:
        assert await jobs.complete(session, second, now=T0 + timedelta(seconds=13))
    job = await _job(sessionmaker, job_id)
    assert (job.status, job.locked_by, job.lease_until) == ("done", None, None)


async def test_the_same_worker_reclaiming_is_a_new_claim(sessionmaker: Sessions) -> None:
    await _enqueue(sessionmaker)
    (first,) = await _claim(sessionmaker, lease=10)
    (second,) = await _claim(sessionmaker, now=T0 + timedelta(seconds=11))
    async with sessionmaker.begin() as session:
        assert not await jobs.complete(session, first, now=T0)
        assert await jobs.complete(session, second, now=T0)


async def test_fail_retries_with_capped_backoff_then_dies(sessionmaker: Sessions) -> None:
    policy = RetryPolicy(base_seconds=10, cap_seconds=25)
    job_id = await _enqueue(sessionmaker, max_attempts=3)
    now = T0
    expected_delays = [10.0, 20.0]  # rand = 1: the ceiling, 10 * 2**(n-1) capped at 25
    for delay in expected_delays:
        (claimed,) = await _claim(sessionmaker, now=now)
        async with sessionmaker.begin() as session:
            status = await jobs.fail(
                session, claimed, error="boom", now=now, policy=policy, rand=lambda: 1.0
            )
        assert status == "queued"
        job = await _job(sessionmaker, job_id)
        assert job.run_at == now + timedelta(seconds=delay)
        assert (job.last_error, job.locked_by) == ("boom", None)
        assert await _claim(sessionmaker, now=now + timedelta(seconds=delay - 1)) == []
        now += timedelta(seconds=delay)

    (claimed,) = await _claim(sessionmaker, now=now)
    assert claimed.attempt == 3
    async with sessionmaker.begin() as session:
        status = await jobs.fail(session, claimed, error="still boom", now=now, policy=policy)
    assert status == "dead"
    job = await _job(sessionmaker, job_id)
    assert (job.status, job.last_error, job.attempts) == ("dead", "still boom", 3)
    assert await _claim(sessionmaker, now=now + timedelta(days=1)) == []


async def test_a_permanent_failure_dies_at_once(sessionmaker: Sessions) -> None:
    job_id = await _enqueue(sessionmaker)
    (claimed,) = await _claim(sessionmaker)
    async with sessionmaker.begin() as session:
        assert await jobs.fail(session, claimed, error="no", now=T0, permanent=True) == "dead"
    assert (await _job(sessionmaker, job_id)).status == "dead"


async def test_requeue_dead_gives_fresh_attempts(sessionmaker: Sessions) -> None:
    job_id = await _enqueue(sessionmaker, max_attempts=1)
    (claimed,) = await _claim(sessionmaker)
    async with sessionmaker.begin() as session:
        assert await jobs.fail(session, claimed, error="boom", now=T0) == "dead"
    later = T0 + timedelta(hours=1)
    async with sessionmaker.begin() as session:
        assert await jobs.requeue_dead(session, job_id, now=later)
        assert not await jobs.requeue_dead(session, job_id, now=later)  # not dead any more
    job = await _job(sessionmaker, job_id)
    assert (job.status, job.attempts, job.run_at) == ("queued", 0, later)
    (again,) = await _claim(sessionmaker, now=later)
    assert again.attempt == 1
    async with sessionmaker.begin() as session:
        assert await jobs.complete(session, again, now=later)
        assert not await jobs.requeue_dead(session, job_id, now=later)


async def test_a_job_that_outlives_its_last_lease_is_dead_not_retried(
    sessionmaker: Sessions,
) -> None:
    job_id = await _enqueue(sessionmaker, max_attempts=1)
    await _claim(sessionmaker, lease=5)
    assert await _claim(sessionmaker, now=T0 + timedelta(seconds=6)) == []
    job = await _job(sessionmaker, job_id)
    assert job.status == "dead"
    assert job.last_error.startswith("lease expired on the last attempt")


async def test_extend_lease_and_release(sessionmaker: Sessions) -> None:
    job_id = await _enqueue(sessionmaker)
    (claimed,) = await _claim(sessionmaker, lease=10)
    async with sessionmaker.begin() as session:
        until = await jobs.extend_lease(
            session, claimed, lease_seconds=10, now=T0 + timedelta(seconds=8)
        )
    assert until == T0 + timedelta(seconds=18)
    assert await _claim(sessionmaker, worker="w2", now=T0 + timedelta(seconds=12)) == []
    async with sessionmaker.begin() as session:
        assert await jobs.release(session, claimed, now=T0 + timedelta(seconds=13))
    job = await _job(sessionmaker, job_id)
    assert (job.status, job.attempts, job.locked_by) == ("queued", 0, None)


async def test_list_count_and_outbox_metrics(sessionmaker: Sessions) -> None:
    await _enqueue(sessionmaker, kind="a", run_at=T0 - timedelta(seconds=40))
    await _enqueue(sessionmaker, kind="a", run_at=T0 + timedelta(seconds=40))
    await _enqueue(sessionmaker, kind="b")
    done_id = await _enqueue(sessionmaker, kind="c")
    (claimed,) = await _claim(sessionmaker, kinds=("c",))
    async with sessionmaker.begin() as session:
        await jobs.complete(session, claimed, now=T0)

    assert await _counts(sessionmaker) == {("queued", "a"): 2, ("queued", "b"): 1, ("done", "c"): 1}
    async with sessionmaker() as session:
        listed = await jobs.list_jobs(session, kind="a")
        assert [job.kind for job in listed] == ["a", "a"]
        assert [job.id for job in await jobs.list_jobs(session, status="done")] == [done_id]
        stats = await jobs.outbox_stats(session, now=T0)
    assert stats.depth_by_kind == {"a": 2, "b": 1}
    assert stats.oldest_due_age_seconds == pytest.approx(40.0)

    jobs.publish_outbox_metrics(stats)
    assert OUTBOX_DEPTH.labels(kind="a")._value.get() == 2
    assert OUTBOX_OLDEST_AGE._value.get() == pytest.approx(40.0)
    jobs.publish_outbox_metrics(jobs.OutboxStats(depth_by_kind={}, oldest_due_age_seconds=0.0))
    assert OUTBOX_DEPTH.labels(kind="a")._value.get() == 0

    async with sessionmaker.begin() as session:
        assert await jobs.purge_done(session, older_than=T0 + timedelta(seconds=1)) == 1
    assert ("done", "c") not in await _counts(sessionmaker)


async def test_committed_jobs_wake_subscribers_and_rolled_back_ones_do_not(
    sessionmaker: Sessions,
) -> None:
    calls: list[str] = []
    unsubscribe = jobs.on_jobs_committed(lambda: calls.append("woken"))
    try:
        async with sessionmaker() as session:
            async with session.begin():
                await jobs.enqueue(session, "k", {}, now=T0)
                await session.rollback()
            assert calls == []
            async with session.begin():
                await jobs.enqueue(session, "k", {}, now=T0)
            assert calls == ["woken"]
            async with session.begin():
                pass  # a transaction without jobs wakes nobody
            assert calls == ["woken"]
    finally:
        unsubscribe()


async def test_outcomes_of_many_claims_apply_only_to_claims_still_held(
    sessionmaker: Sessions,
) -> None:
    ids = [await _enqueue(sessionmaker) for _ in range(4)]
    old = await _claim(sessionmaker, worker="w1", lease=10)
    # w1 stalls past its lease; w2 takes two of the jobs over (the same worker could too).
    later = T0 + timedelta(seconds=11)
    taken = await _claim(sessionmaker, worker="w2", now=later, limit=2)
    assert [job.id for job in taken] == ids[:2]
    still_w1 = [job for job in old if job.id in ids[2:]]
    policy = RetryPolicy(base_seconds=10, cap_seconds=100)
    async with sessionmaker.begin() as session:
        assert await jobs.extend_leases(session, old, lease_seconds=30, now=later) == set(ids[2:])
        assert await jobs.complete_many(session, old[:2], now=later) == set()
        await jobs.fail_many(
            session, [jobs.Failure(job, "boom") for job in old[:2]], now=later, policy=policy
        )
        assert await jobs.release_many(session, old[:2], now=later) == set()
        assert await jobs.complete_many(session, still_w1[:1], now=later) == {ids[2]}
        statuses = await jobs.fail_many(
            session,
            [jobs.Failure(still_w1[1], "HTTP 500"), jobs.Failure(taken[0], "gone", permanent=True)],
            now=later,
            policy=policy,
            rand=lambda: 0.5,
        )
        assert statuses == {ids[3]: "queued", ids[0]: "dead"}
        assert await jobs.release_many(session, taken[1:], now=later) == {ids[1]}
    rows = [await _job(sessionmaker, job_id) for job_id in ids]
    assert [(r.status, r.attempts, r.locked_by, r.last_error) for r in rows] == [
        ("dead", 2, None, "gone"),  # w2's claim (the second), failed permanently
        ("queued", 1, None, ""),  # w2's claim, given back: its attempt not counted
        ("done", 1, None, ""),
        ("queued", 1, None, "HTTP 500"),
    ]
    assert rows[3].run_at == later + timedelta(seconds=5)  # half of the first ceiling
