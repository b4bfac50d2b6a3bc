"""The outbox: jobs written in the caller's transaction, claimed by workers under a lease.

Life of a job (``jobs.status``)::

    queued --claim--> running --complete--> done
      ^                  |  \\--fail, attempts left--> queued (run_at = now + backoff)
      |                  |   \\-fail, none left / permanent--> dead
      |                  \\--lease expired (worker died)--> claimable again
      +------requeue_dead------ dead

- ``enqueue`` only inserts: it runs inside the transaction of the use case that decided on the
  work, so the job exists if and only if that decision was committed (DESIGN.md §2.1).
- ``claim`` marks due jobs ``running`` for one worker until ``lease_until``. On PostgreSQL the
  candidate rows are locked ``FOR UPDATE SKIP LOCKED``, so concurrent workers take disjoint
  sets without waiting on each other; on SQLite the single ``UPDATE ... RETURNING`` runs under
  ``BEGIN IMMEDIATE`` (store/db.py), which serialises writers.
- Every claim adds one to ``attempts``; ``(locked_by, attempts)`` then names that claim alone.
  ``complete``, ``fail``, ``extend_lease`` and ``release`` only act while the job still carries
  that pair, so a worker that lost its lease (it stalled past ``lease_until`` and another
  worker took the job over) cannot overwrite the newer claim's outcome.
- A job whose worker died stays ``running`` until its lease expires; the next claim takes it
  again. Delivery is therefore at least once: a handler must tolerate running twice.

Each function works in the session it is given and never commits.
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

from sqlalchemy import Table, and_, delete, event, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from smsgate.domain.backoff import DEFAULT_RETRY, RetryPolicy
from smsgate.metrics import OUTBOX_DEPTH, OUTBOX_OLDEST_AGE
from smsgate.store.models import Job
from smsgate.store.row_sets import execute, insert_rows, stored_time

QUEUED: Final = "queued"
RUNNING: Final = "running"
DONE: Final = "done"
DEAD: Final = "dead"
STATUSES: Final = (QUEUED, RUNNING, DONE, DEAD)

DEFAULT_MAX_ATTEMPTS: Final = 12
# last_error keeps the start of long tracebacks only: it is for people, not for parsing.
MAX_ERROR_CHARS: Final = 2000


@dataclass(frozen=True)
class ClaimedJob:
    """A job as one worker holds it: ``attempt`` is this claim's number (1 for the first)."""

    id: int
    kind: str
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    worker_id: str
    lease_until: datetime
    run_at: datetime
    created_at: datetime


@dataclass(frozen=True)
class OutboxStats:
    """Waiting work: queued and running jobs by kind, and the lag of the oldest due job."""

    depth_by_kind: dict[str, int]
    oldest_due_age_seconds: float


# --- enqueue -----------------------------------------------------------------------------


async def enqueue(
    session: AsyncSession,
    kind: str,
    payload: dict[str, Any],
    *,
    now: datetime,
    run_at: datetime | None = None,
    max_attempts: int | None = None,
    dedupe_key: str | None = None,
) -> int:
    """Add a job in the caller's transaction and return its id.

    With ``dedupe_key`` the job exists at most once: when a job with that key was already
    written (by this transaction or a committed one), nothing is added and that job's id is
    returned.
    """
    if not kind:
        raise ValueError("a job needs a kind")
    attempts_allowed = DEFAULT_MAX_ATTEMPTS if max_attempts is None else max_attempts
    if attempts_allowed < 1:
        raise ValueError("max_attempts must be at least 1")
    values: dict[str, Any] = {
        "kind": kind,
        "payload": payload,
        "status": QUEUED,
        "run_at": run_at or now,
        "attempts": 0,
        "max_attempts": attempts_allowed,
        "last_error": "",
        "dedupe_key": dedupe_key,
        "created_at": now,
        "updated_at": now,
    }
    if dedupe_key is None:
        job_id = (
            await session.execute(_insert(session).values(**values).returning(Job.id))
        ).scalar_one()
    else:
        statement = (
            _insert(session)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[Job.dedupe_key])
            .returning(Job.id)
        )
        inserted = (await session.execute(statement)).scalar_one_or_none()
        if inserted is None:
            existing = await session.execute(select(Job.id).where(Job.dedupe_key == dedupe_key))
            return int(existing.scalar_one())
        job_id = inserted
    _wake_after_commit(session)
    return int(job_id)


async def enqueue_many(
    session: AsyncSession,
    kind: str,
    payloads: Sequence[dict[str, Any]],
    *,
    now: datetime,
    max_attempts: int | None = None,
) -> int:
    """Add one job of ``kind`` per payload, due now, in the caller's transaction; returns how
    many. One statement for the lot (no ids come back, and there is no ``dedupe_key``): for
    callers that queue hundreds of jobs per transaction."""
    if not kind:
        raise ValueError("a job needs a kind")
    attempts_allowed = DEFAULT_MAX_ATTEMPTS if max_attempts is None else max_attempts
    if attempts_allowed < 1:
        raise ValueError("max_attempts must be at least 1")
    if not payloads:
        return 0
    rows = [
        {
            "kind": kind,
            "payload": payload,
            "status": QUEUED,
            "run_at": now,
            "attempts": 0,
            "max_attempts": attempts_allowed,
            "last_error": "",
            "dedupe_key": None,
            "created_at": now,
            "updated_at": now,
        }
        for payload in payloads
    ]
    # One JSON parameter, not executemany: see store/row_sets.py.
    await insert_rows(await session.connection(), _JOBS, rows, columns=_JOB_COLUMNS)
    _wake_after_commit(session)
    return len(rows)


_JOBS = cast(Table, Job.__table__)
_JOB_COLUMNS: Final = (
    "kind",
    "payload",
    "status",
    "run_at",
    "attempts",
    "max_attempts",
    "last_error",
    "dedupe_key",
    "created_at",
    "updated_at",
)


def _insert(session: AsyncSession) -> Any:
    # Both dialects' insert() know ON CONFLICT DO NOTHING; the generic one does not.
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(Job)
    return sqlite.insert(Job)


# --- claim and finish ----------------------------------------------------------------------


async def claim(
    session: AsyncSession,
    *,
    worker_id: str,
    kinds: Collection[str],
    limit: int,
    lease_seconds: float,
    now: datetime,
) -> list[ClaimedJob]:
    """Take up to ``limit`` due jobs of ``kinds`` for ``worker_id``: those whose lease expired
    first, then queued ones, each oldest due first.

    Due: ``queued`` with ``run_at <= now``, or ``running`` with an expired lease (its worker
    died or stalled). An expired job that already used its last attempt is made ``dead``
    instead, so a job that kills its worker every time cannot loop forever.
    """
    if limit < 1 or not kinds:
        return []
    kinds = list(kinds)
    lease_until = now + timedelta(seconds=lease_seconds)
    expired = and_(Job.status == RUNNING, Job.lease_until < now)
    await session.execute(
        update(Job)
        .where(expired, Job.kind.in_(kinds), Job.attempts >= Job.max_attempts)
        .values(
            status=DEAD,
            locked_by=None,
            lease_until=None,
            last_error=func.substr(
                "lease expired on the last attempt (the worker died or stalled); " + Job.last_error,
                1,
                MAX_ERROR_CHARS,
            ),
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    # Jobs whose lease expired, then queued ones, each by its own ordered scan of
    # ix_jobs_status_run_at up to the limit: one OR of the two made PostgreSQL read and sort
    # every due job on each claim (the whole backlog, when the worker is behind).
    claimed = await _take(session, expired, kinds, limit, worker_id, lease_until, now)
    if len(claimed) < limit:
        due = and_(Job.status == QUEUED, Job.run_at <= now)
        claimed += await _take(
            session, due, kinds, limit - len(claimed), worker_id, lease_until, now
        )
    claimed.sort(key=lambda job: (job.run_at, job.id))
    return claimed


async def _take(
    session: AsyncSession,
    condition: Any,
    kinds: list[str],
    limit: int,
    worker_id: str,
    lease_until: datetime,
    now: datetime,
) -> list[ClaimedJob]:
    candidates = (
        select(Job.id)
        .where(Job.kind.in_(kinds), condition)
        .order_by(Job.run_at, Job.id)
        .limit(limit)
        # PostgreSQL: rows another worker is claiming right now are skipped, not waited for.
        # SQLite has no row locks (the clause is not rendered); BEGIN IMMEDIATE serialises.
        .with_for_update(skip_locked=True)
    )
    result = await session.execute(
        update(Job)
        .where(Job.id.in_(candidates.scalar_subquery()))
        .values(
            status=RUNNING,
            locked_by=worker_id,
            lease_until=lease_until,
            attempts=Job.attempts + 1,
            updated_at=now,
        )
        .returning(
            Job.id,
            Job.kind,
            Job.payload,
            Job.attempts,
            Job.max_attempts,
            Job.run_at,
            Job.created_at,
        )
        .execution_options(synchronize_session=False)
    )
    return [
        ClaimedJob(
            id=row.id,
            kind=row.kind,
            payload=dict(row.payload or {}),
            attempt=row.attempts,
            max_attempts=row.max_attempts,
            worker_id=worker_id,
            lease_until=lease_until,
            run_at=row.run_at,
            created_at=row.created_at,
        )
        for row in result
    ]


def _ours(job: ClaimedJob) -> Any:
    return and_(
        Job.id == job.id,
        Job.status == RUNNING,
        Job.locked_by == job.worker_id,
        Job.attempts == job.attempt,
    )


async def complete(session: AsyncSession, job: ClaimedJob, *, now: datetime) -> bool:
    """Mark the job done; False (and nothing changed) when the claim is no longer ours."""
    result = await session.execute(
        update(Job)
        .where(_ours(job))
        .values(status=DONE, locked_by=None, lease_until=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


async def fail(
    session: AsyncSession,
    job: ClaimedJob,
    *,
    error: str,
    now: datetime,
    permanent: bool = False,
    policy: RetryPolicy = DEFAULT_RETRY,
    rand: Callable[[], float] = random.random,
) -> str | None:
    """Record a failed attempt: back to ``queued`` after a backoff delay, or ``dead`` when no
    attempts are left (or ``permanent``). Returns the new status, or None when the claim is no
    longer ours."""
    if permanent or job.attempt >= job.max_attempts:
        values: dict[str, Any] = {"status": DEAD}
    else:
        delay = policy.delay(job.attempt, rand())
        values = {"status": QUEUED, "run_at": now + timedelta(seconds=delay)}
    values.update(
        locked_by=None, lease_until=None, last_error=error[:MAX_ERROR_CHARS], updated_at=now
    )
    result = await session.execute(
        update(Job).where(_ours(job)).values(**values).execution_options(synchronize_session=False)
    )
    return str(values["status"]) if _rowcount(result) == 1 else None


async def extend_lease(
    session: AsyncSession, job: ClaimedJob, *, lease_seconds: float, now: datetime
) -> datetime | None:
    """Push the lease of a job still running to ``now + lease_seconds``; None if not ours."""
    lease_until = now + timedelta(seconds=lease_seconds)
    result = await session.execute(
        update(Job)
        .where(_ours(job))
        .values(lease_until=lease_until, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return lease_until if _rowcount(result) == 1 else None


async def release(session: AsyncSession, job: ClaimedJob, *, now: datetime) -> bool:
    """Give an unfinished job back (the worker is shutting down): queued again at once, and
    the attempt it was given does not count."""
    result = await session.execute(
        update(Job)
        .where(_ours(job))
        .values(
            status=QUEUED,
            locked_by=None,
            lease_until=None,
            attempts=Job.attempts - 1,
            run_at=now,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


# --- finishing many claims at once (batch handlers) ----------------------------------------


@dataclass(frozen=True)
class Failure:
    """A failed attempt of a claimed job, for ``fail_many``."""

    job: ClaimedJob
    error: str
    permanent: bool = False


def _claim_groups(claims: Sequence[ClaimedJob]) -> dict[tuple[str, int], list[int]]:
    """The claims' ids by ``(locked_by, attempts)``, which names a claim: the jobs of a batch
    mostly share both, so a batch takes one or a few statements rather than one per job."""
    groups: dict[tuple[str, int], list[int]] = {}
    for job in claims:
        groups.setdefault((job.worker_id, job.attempt), []).append(job.id)
    return groups


async def _update_claims(
    session: AsyncSession, claims: Sequence[ClaimedJob], sets: str, values: Sequence[Any]
) -> set[int]:
    """``UPDATE jobs SET <sets>`` for the claims still held. ``sets`` numbers its parameters
    from 4 (``{4}``, ``{5}``...) and ``values`` fills them; the ids travel as one parameter
    (an array on PostgreSQL, a JSON array on SQLite), so the statement's text is the same
    whatever the batch's size and PostgreSQL parses and plans it once per connection."""
    if not claims:
        return set()
    connection = await session.connection()
    dialect = connection.dialect
    sql = _claims_sql(dialect.name, sets)
    stored = tuple(stored_time(dialect, v) if isinstance(v, datetime) else v for v in values)
    touched: set[int] = set()
    for (worker_id, attempt), ids in _claim_groups(claims).items():
        id_list: Any = json.dumps(ids) if dialect.name == "sqlite" else ids
        rows = await execute(connection, sql, (id_list, worker_id, attempt, *stored))
        touched.update(int(row[0]) for row in rows)
    return touched


@functools.lru_cache(maxsize=16)
def _claims_sql(dialect_name: str, sets: str) -> str:
    mark = "?" if dialect_name == "sqlite" else "$"
    ids = "IN (SELECT value FROM json_each(?1))" if mark == "?" else "= ANY($1::bigint[])"
    numbered = sets.format(*(f"{mark}{n}" for n in range(10)))
    # Only fixed fragments of this module are spliced in; values are bound.
    return (
        f"UPDATE jobs SET {numbered} WHERE id {ids} AND status = '{RUNNING}' "  # noqa: S608
        f"AND locked_by = {mark}2 AND attempts = {mark}3 RETURNING id"
    )


async def complete_many(
    session: AsyncSession, claims: Sequence[ClaimedJob], *, now: datetime
) -> set[int]:
    """``complete`` for many claims; returns the ids that were still ours."""
    sets = f"status = '{DONE}', locked_by = NULL, lease_until = NULL, updated_at = {{4}}"
    return await _update_claims(session, claims, sets, (now,))


async def fail_many(
    session: AsyncSession,
    failures: Sequence[Failure],
    *,
    now: datetime,
    policy: RetryPolicy = DEFAULT_RETRY,
    rand: Callable[[], float] = random.random,
) -> dict[int, str]:
    """``fail`` for many claims: each goes back to ``queued`` after its backoff delay, or is
    ``dead``. Returns the status each job was given (a claim that was no longer ours is left
    as it is, though it is listed too)."""
    if not failures:
        return {}
    connection = await session.connection()
    dialect = connection.dialect
    rows = []
    statuses: dict[int, str] = {}
    for failure in failures:
        job = failure.job
        if failure.permanent or job.attempt >= job.max_attempts:
            status, run_at = DEAD, job.run_at
        else:
            status, run_at = QUEUED, now + timedelta(seconds=policy.delay(job.attempt, rand()))
        statuses[job.id] = status
        rows.append(
            {
                "b_id": job.id,
                "b_attempts": job.attempt,
                "b_worker": job.worker_id,
                "b_status": status,
                "b_run_at": _json_time(dialect, run_at),
                "b_error": failure.error[:MAX_ERROR_CHARS],
            }
        )
    # Each row has its own status, time and error: they travel as one JSON parameter and
    # one statement updates them all (see store/row_sets.py).
    sql = _FAIL_MANY_SQLITE if dialect.name == "sqlite" else _FAIL_MANY_POSTGRES
    await execute(
        connection,
        sql,
        (json.dumps(rows, separators=(",", ":")), stored_time(dialect, now)),
    )
    return statuses


def _json_time(dialect: Any, value: datetime) -> str:
    if dialect.name == "sqlite":
        return str(stored_time(dialect, value))
    return value.astimezone(UTC).isoformat()


_FAIL_MANY_POSTGRES: Final = f"""
UPDATE jobs SET status = r.b_status, run_at = r.b_run_at, last_error = r.b_error,
    locked_by = NULL, lease_until = NULL, updated_at = $2
FROM json_to_recordset($1::json) AS r(
    b_id bigint, b_attempts int, b_worker text, b_status text, b_run_at timestamptz, b_error text)
WHERE jobs.id = r.b_id AND jobs.attempts = r.b_attempts AND jobs.locked_by = r.b_worker
    AND jobs.status = '{RUNNING}'
"""  # noqa: S608
_FAIL_MANY_SQLITE: Final = f"""
UPDATE jobs SET status = r.value ->> 'b_status', run_at = r.value ->> 'b_run_at',
    last_error = r.value ->> 'b_error', locked_by = NULL, lease_until = NULL, updated_at = ?2
FROM json_each(?1) AS r
WHERE jobs.id = r.value ->> 'b_id' AND jobs.attempts = r.value ->> 'b_attempts'
    AND jobs.locked_by = r.value ->> 'b_worker' AND jobs.status = '{RUNNING}'
"""  # noqa: S608


async def extend_leases(
    session: AsyncSession, claims: Sequence[ClaimedJob], *, lease_seconds: float, now: datetime
) -> set[int]:
    """``extend_lease`` for many claims; returns the ids still ours."""
    lease_until = now + timedelta(seconds=lease_seconds)
    return await _update_claims(
        session, claims, "lease_until = {4}, updated_at = {5}", (lease_until, now)
    )


async def release_many(
    session: AsyncSession, claims: Sequence[ClaimedJob], *, now: datetime
) -> set[int]:
    """``release`` for many claims; returns the ids given back."""
    sets = (
        f"status = '{QUEUED}', locked_by = NULL, lease_until = NULL, attempts = attempts - 1, "
        "run_at = {4}, updated_at = {4}"
    )
    return await _update_claims(session, claims, sets, (now,))


async def requeue_dead(session: AsyncSession, job_id: int, *, now: datetime) -> bool:
    """Give a dead job a fresh set of attempts, due now. False if it is not dead."""
    result = await session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == DEAD)
        .values(
            status=QUEUED, attempts=0, run_at=now, locked_by=None, lease_until=None, updated_at=now
        )
        .execution_options(synchronize_session=False)
    )
    if _rowcount(result) != 1:
        return False
    _wake_after_commit(session)
    return True


def _rowcount(result: Any) -> int:
    return int(result.rowcount)


# --- reading -----------------------------------------------------------------------------


async def get_job(session: AsyncSession, job_id: int) -> Job | None:
    return await session.get(Job, job_id, populate_existing=True)


async def list_jobs(
    session: AsyncSession,
    *,
    status: str | None = None,
    kind: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Sequence[Job]:
    """Jobs, newest first, optionally of one status and kind (for the panel and the API)."""
    query = select(Job).order_by(Job.id.desc()).limit(limit).offset(offset)
    if status is not None:
        query = query.where(Job.status == status)
    if kind is not None:
        query = query.where(Job.kind == kind)
    return (await session.execute(query)).scalars().all()


async def count_jobs(session: AsyncSession) -> dict[tuple[str, str], int]:
    """Number of jobs by ``(status, kind)``."""
    rows = await session.execute(
        select(Job.status, Job.kind, func.count()).group_by(Job.status, Job.kind)
    )
    return {(status, kind): int(count) for status, kind, count in rows}


async def outbox_stats(session: AsyncSession, *, now: datetime) -> OutboxStats:
    rows = await session.execute(
        select(Job.kind, func.count()).where(Job.status.in_((QUEUED, RUNNING))).group_by(Job.kind)
    )
    depth = {kind: int(count) for kind, count in rows}
    oldest = (
        await session.execute(
            select(func.min(Job.run_at)).where(Job.status == QUEUED, Job.run_at <= now)
        )
    ).scalar_one_or_none()
    age = 0.0
    if oldest is not None:
        age = max(0.0, (now - oldest).total_seconds())
    return OutboxStats(depth_by_kind=depth, oldest_due_age_seconds=age)


_published_kinds: set[str] = set()


def publish_outbox_metrics(stats: OutboxStats) -> None:
    """Set the outbox gauges; a kind that drained since the last call reads 0, not stale."""
    for kind in _published_kinds - stats.depth_by_kind.keys():
        OUTBOX_DEPTH.labels(kind=kind).set(0)
    for kind, depth in stats.depth_by_kind.items():
        OUTBOX_DEPTH.labels(kind=kind).set(depth)
        _published_kinds.add(kind)
    OUTBOX_OLDEST_AGE.set(stats.oldest_due_age_seconds)


async def purge_done(session: AsyncSession, *, older_than: datetime, limit: int = 1000) -> int:
    """Delete up to ``limit`` finished jobs last touched before ``older_than``; returns how
    many. (Dead jobs stay until someone looks at them.)"""
    batch = (
        select(Job.id)
        .where(Job.status == DONE, Job.updated_at < older_than)
        .limit(limit)
        .scalar_subquery()
    )
    result = await session.execute(
        delete(Job).where(Job.id.in_(batch)).execution_options(synchronize_session=False)
    )
    return _rowcount(result)


# --- waking workers of this process after a commit -----------------------------------------

_wakeups: set[Callable[[], None]] = set()
_PENDING = "smsgate.jobs.wake_pending"
_LISTENING = "smsgate.jobs.wake_listening"


def on_jobs_committed(callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` after any transaction of this process that added a job commits.

    Only latency depends on it: workers poll as well, and jobs committed by other processes
    are only ever found by polling. Returns a function that unsubscribes. The callback runs in
    the committing thread and must be quick and thread-safe.
    """
    _wakeups.add(callback)
    return lambda: _wakeups.discard(callback)


def _wake_after_commit(session: AsyncSession) -> None:
    sync_session = session.sync_session
    sync_session.info[_PENDING] = True
    if not sync_session.info.get(_LISTENING):
        sync_session.info[_LISTENING] = True
        event.listen(sync_session, "after_commit", _after_commit)
        event.listen(sync_session, "after_rollback", _after_rollback)


def _after_commit(session: Session) -> None:
    if session.info.pop(_PENDING, False):
        for callback in list(_wakeups):
            callback()


def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)
