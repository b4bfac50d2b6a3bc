"""Checks decided in batches, on both databases: the rules applied within one batch, two
checkers (as two gateway processes have) sharing one database, and a database that cannot
be reached."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from tests.integration.access_codes.conftest import client_from, code_of, send_mo

from smsgate.api.app import create_api
from smsgate.app import build_runtime
from smsgate.config import Settings
from smsgate.domain.clock import FakeClock
from smsgate.runtime import Runtime
from smsgate.services.bans import BanList, make_storage
from smsgate.services.check_batch import CheckAnswer, PendingCheck, StoredCode
from smsgate.services.check_stores import MAX_ON_LOOP, PostgresCheckStore, make_check_store
from smsgate.services.code_checks import CheckRequest, CodeChecker
from smsgate.store.models import AccessCode, CodeCheck

CONCURRENT = 20


async def issue(runtime: Runtime, keyword: str, message_id: str) -> str:
    outcome = await send_mo(runtime, keyword, message_id=message_id)
    return await code_of(runtime, outcome.mo_id)


def pending(service_id: int | None, typed: str, clock: FakeClock, **kwargs: object) -> PendingCheck:
    fields: dict[str, object] = {
        "service_id": service_id,
        "code": typed,
        "answer": None,
        "code_given": typed,
        "requester_ip": "10.1.2.3",
        "user_ip": "",
        "via": "legacy",
        "at": clock.now(),
    }
    fields.update(kwargs)
    return PendingCheck(**fields)  # type: ignore[arg-type]


async def stored(runtime: Runtime, code: str) -> AccessCode:
    async with runtime.sessions() as session:
        row = await session.scalar(select(AccessCode).where(AccessCode.code == code))
    assert row is not None
    return row


async def test_a_one_use_code_twice_in_one_batch_is_ok_then_expired(
    runtime: Runtime, clock: FakeClock
) -> None:
    code = await issue(runtime, "KOD", "m-1")
    store = make_check_store(runtime.engine.url)
    try:
        results = await store.run([pending(102, code, clock), pending(102, code, clock)])
    finally:
        await store.aclose()
    assert [r.answer for r in results] == [CheckAnswer.CODE_OK, CheckAnswer.CODE_EXPIRED]
    assert results[0].uses_left == 0 and results[1].uses_left == 0
    row = await stored(runtime, code)
    assert (row.uses_left, row.uses_count, row.status, row.first_used_at) == (
        0,
        1,
        "used",
        clock.now(),
    )
    async with runtime.sessions() as session:
        answers = list(
            await session.scalars(
                select(CodeCheck.answer).where(CodeCheck.code_id == row.id).order_by(CodeCheck.id)
            )
        )
    assert answers == ["CODE_OK", "CODE_EXPIRED"]


async def test_the_first_use_in_a_batch_starts_the_period(
    runtime: Runtime, clock: FakeClock
) -> None:
    code = await issue(runtime, "FIRST", "m-1")
    first = clock.now()
    later = first + timedelta(minutes=5)
    store = make_check_store(runtime.engine.url)
    try:
        results = await store.run([pending(104, code, clock), pending(104, code, clock, at=later)])
        # Past the period started by the first use (600 s), still inside the lifetime.
        too_late = first + timedelta(seconds=600)
        [expired] = await store.run([pending(104, code, clock, at=too_late)])
    finally:
        await store.aclose()
    assert [r.answer for r in results] == [CheckAnswer.CODE_OK, CheckAnswer.CODE_OK]
    assert results[0].expires_at == results[1].expires_at == first + timedelta(seconds=600)
    assert expired.answer is CheckAnswer.CODE_EXPIRED
    row = await stored(runtime, code)
    assert row.first_used_at == first
    assert row.valid_until == first + timedelta(seconds=600)
    assert row.uses_count == 2


async def test_a_batch_mixes_found_unknown_and_decided_checks(
    runtime: Runtime, clock: FakeClock
) -> None:
    code = await issue(runtime, "DAY", "m-1")
    store = make_check_store(runtime.engine.url)
    try:
        results = await store.run(
            [
                pending(103, "NOSUCH22", clock),
                pending(None, "", clock, code=None, answer=CheckAnswer.INVALID_INPUT),
                pending(103, code, clock),
                pending(102, code, clock),  # another service's code is no code
            ]
        )
    finally:
        await store.aclose()
    assert [r.answer for r in results] == [
        CheckAnswer.CODE_NOT_FOUND,
        CheckAnswer.INVALID_INPUT,
        CheckAnswer.CODE_OK,
        CheckAnswer.CODE_NOT_FOUND,
    ]
    async with runtime.sessions() as session:
        rows = (await session.execute(select(CodeCheck.service_id, CodeCheck.answer))).all()
    assert sorted(rows, key=str) == sorted(
        [
            (103, "CODE_NOT_FOUND"),
            (None, "INVALID_INPUT"),
            (103, "CODE_OK"),
            (102, "CODE_NOT_FOUND"),
        ],
        key=str,
    )


async def test_two_checkers_on_one_database_give_one_code_ok(
    runtime: Runtime, clock: FakeClock
) -> None:
    """Two checkers, each with its own connection and batches, as two gateway processes."""
    code = await issue(runtime, "KOD", "m-1")
    checkers = [CodeChecker(runtime.engine, clock, BanList(make_storage(None))) for _ in range(2)]
    try:
        answers = Counter(
            result.answer.value
            for result in await asyncio.gather(
                *(
                    checkers[i % 2].check(CheckRequest(102, code, "10.1.2.3", 1))
                    for i in range(CONCURRENT)
                )
            )
        )
    finally:
        for checker in checkers:
            await checker.aclose()
    assert answers == Counter({"CODE_OK": 1, "CODE_EXPIRED": CONCURRENT - 1})
    row = await stored(runtime, code)
    assert (row.uses_left, row.uses_count, row.status) == (0, 1, "used")
    async with runtime.sessions() as session:
        kept = Counter(
            await session.scalars(select(CodeCheck.answer).where(CodeCheck.code_id == row.id))
        )
    assert kept == answers


@pytest.mark.parametrize(
    "unreachable",
    [
        "sqlite+aiosqlite:///{tmp}/no-such-directory/gateway.db",
        "postgresql+asyncpg://postgres@127.0.0.1:1/smsgate_nowhere",
    ],
)
async def test_an_unreachable_database_answers_503_and_never_code_ok(
    unreachable: str, tmp_path: Path
) -> None:
    runtime = build_runtime(Settings(database_url=unreachable.format(tmp=tmp_path)))
    app = create_api(runtime)
    try:
        async with client_from(app) as client:
            response = await client.get(
                "/users/check_code.php",
                params={"user_id": 1, "service_id": 102, "code": "K7M2XH4P"},
            )
    finally:
        await app.state.code_checker.aclose()
        await runtime.engine.dispose()
    assert response.status_code == 503
    assert response.text == "SERVICE_DISABLED"
    assert response.headers["retry-after"] == "1"


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_batch_waits_off_the_loop_while_another_connection_writes(
    runtime: Runtime, clock: FakeClock
) -> None:
    """On SQLite a batch runs on the event loop only when the write lock is free at once;
    while another connection holds it the batch waits on the store's thread, and the loop
    goes on serving everything else."""
    code = await issue(runtime, "KOD", "m-1")
    path = runtime.engine.url.database
    assert path is not None
    writer = sqlite3.connect(path, isolation_level=None)
    store = make_check_store(runtime.engine.url)
    try:
        await store.start()
        writer.execute("BEGIN IMMEDIATE")
        batch = asyncio.ensure_future(store.run([pending(102, code, clock)]))
        ticks = 0
        for _ in range(20):
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 20 and not batch.done()  # the loop was never blocked by the lock
        writer.execute("COMMIT")
        [result] = await asyncio.wait_for(batch, timeout=10)
    finally:
        writer.close()
        await store.aclose()
    assert result.answer is CheckAnswer.CODE_OK
    assert (await stored(runtime, code)).uses_left == 0


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_large_batch_is_decided_on_the_thread_with_the_same_rules(
    runtime: Runtime, clock: FakeClock
) -> None:
    code = await issue(runtime, "KOD", "m-1")
    checks = [pending(102, code, clock)] * 2 + [
        pending(102, f"NONE{n:04d}", clock) for n in range(MAX_ON_LOOP)
    ]
    store = make_check_store(runtime.engine.url)
    try:
        results = await store.run(checks)
    finally:
        await store.aclose()
    assert Counter(r.answer for r in results) == {
        CheckAnswer.CODE_OK: 1,
        CheckAnswer.CODE_EXPIRED: 1,
        CheckAnswer.CODE_NOT_FOUND: MAX_ON_LOOP,
    }
    async with runtime.sessions() as session:
        rows = await session.scalar(select(func.count()).select_from(CodeCheck))
    assert rows == MAX_ON_LOOP + 2


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_a_use_made_elsewhere_between_the_read_and_the_write_is_decided_again(
    runtime: Runtime, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL decides a batch on an unlocked read: when another process uses the code in
    between, this batch's use is refused by the write and its check decided again, under
    lock, on the code as the other process left it."""
    code = await issue(runtime, "KOD", "m-1")  # one use
    ours = make_check_store(runtime.engine.url)
    theirs = make_check_store(runtime.engine.url)
    assert isinstance(ours, PostgresCheckStore)
    read = ours._read
    raced: list[CheckAnswer] = []

    async def read_then_lose_the_race(
        conn: Any, wanted: dict[int, list[str]], statement: str
    ) -> dict[tuple[int, str], StoredCode]:
        found = await read(conn, wanted, statement)
        if not raced:
            [theirs_first] = await theirs.run([pending(102, code, clock)])
            raced.append(theirs_first.answer)
        return found

    monkeypatch.setattr(ours, "_read", read_then_lose_the_race)
    try:
        [result] = await ours.run([pending(102, code, clock)])
    finally:
        await ours.aclose()
        await theirs.aclose()
    assert raced == [CheckAnswer.CODE_OK]
    assert result.answer is CheckAnswer.CODE_EXPIRED
    row = await stored(runtime, code)
    assert (row.uses_left, row.uses_count, row.status) == (0, 1, "used")
    async with runtime.sessions() as session:
        answers = list(
            await session.scalars(
                select(CodeCheck.answer).where(CodeCheck.code_id == row.id).order_by(CodeCheck.id)
            )
        )
    assert answers == ["CODE_OK", "CODE_EXPIRED"]
