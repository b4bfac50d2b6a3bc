"""``smsgate send-csv`` as a user runs it: a campaign killed with SIGKILL mid-run and run again
sends every row exactly once; a finished campaign is not sent twice by accident."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.integration.bulk.bulk_env import SERVICE_ID, provision

from smsgate.store.db import make_engine, make_sessionmaker
from smsgate.store.migrate import upgrade

ROWS = 5000


def cli(*args: str, database_url: str) -> list[str]:
    return [sys.executable, "-c", "from smsgate.cli import app; app()", *args]


def env(database_url: str) -> dict[str, str]:
    return {**os.environ, "SMSGATE_DATABASE_URL": database_url, "COLUMNS": "120"}


async def prepare(database_url: str) -> None:
    await upgrade(database_url)
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            await provision(session, price="0.01", credit_minor=10**9)
    finally:
        await engine.dispose()


def totals(database_url: str) -> tuple[int, int, int]:
    """MTs, distinct idempotency keys, campaign rows: a plain read, which in WAL mode never
    waits for the campaign's writes."""
    path = database_url.removeprefix("sqlite+aiosqlite:///")
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        mts, keys = connection.execute(
            "SELECT count(*), count(DISTINCT idempotency_key) FROM mt_messages"
        ).fetchone()
        (rows,) = connection.execute("SELECT count(*) FROM campaign_rows").fetchone()
    finally:
        connection.close()
    return int(mts), int(keys), int(rows)


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "invoices.csv"
    lines = ["msisdn,text"] + [
        f"35988{1000000 + i},Invoice {i} is ready" for i in range(1, ROWS + 1)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.slow
def test_killed_campaign_resumes_and_sends_every_row_once(tmp_path: Path, csv_file: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    asyncio.run(prepare(url))
    args = cli(
        "send-csv", str(csv_file), "--service", str(SERVICE_ID), "--batch", "10", database_url=url
    )
    first = subprocess.Popen(
        args, env=env(url), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if totals(url)[2] >= 200 or first.poll() is not None:
                break
            time.sleep(0.1)
        assert first.poll() is None, "the campaign ended before it could be killed"
        first.send_signal(signal.SIGKILL)
    finally:
        first.wait(timeout=30)
    mts, keys, rows = totals(url)
    assert 200 <= mts < ROWS
    assert mts == keys == rows  # every committed row has its MT, and no more

    second = subprocess.run(args, env=env(url), capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    assert "Resuming campaign 1" in second.stdout
    assert f"{rows} of {ROWS} rows already done" in second.stdout
    assert totals(url) == (ROWS, ROWS, ROWS)

    again = subprocess.run(args, env=env(url), capture_output=True, text=True, timeout=120)
    assert again.returncode == 2
    assert "already sent this file" in again.stderr
    assert totals(url) == (ROWS, ROWS, ROWS)


def test_summary_table_and_bad_files(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    asyncio.run(prepare(url))
    good = tmp_path / "few.csv"
    good.write_text("msisdn;name\n359881234567;Ana\n0881;Bob\n359887654321;Ivo\n", "utf-8")
    done = subprocess.run(
        cli(
            "send-csv",
            str(good),
            "--service",
            str(SERVICE_ID),
            "--template",
            "Hi {name}!",
            database_url=url,
        ),
        env=env(url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "sent now" in done.stdout
    assert "refused: invalid-msisdn" in done.stdout
    assert "0.02 BGN" in done.stdout
    assert totals(url)[:2] == (2, 2)

    bad = tmp_path / "bad.csv"
    bad.write_text("phone,text\n359881234567,Hi\n", "utf-8")
    refused = subprocess.run(
        cli("send-csv", str(bad), "--service", str(SERVICE_ID), database_url=url),
        env=env(url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2
    assert "no 'msisdn' column" in refused.stderr
