"""check_code.php throughput and latency against a running gateway holding many codes.

For each database it:

1. creates a fresh database (a SQLite file, or a PostgreSQL database on 127.0.0.1:5432),
   migrates it, provisions one merchant and one access-code service, and bulk-inserts
   ``--codes`` codes (executemany on SQLite, COPY on PostgreSQL);
2. starts ``smsgate serve --no-worker --no-links`` in a subprocess on a free port;
3. drives ``GET /users/check_code.php`` with wrk, each request a random code of a sample of
   the stored ones (every answer is CODE_OK: the codes are ``period_from_issue`` and valid for
   a year, so each check is the full path: lookup, conditional update, check row);
4. drives ``GET /bench/noop`` (a plain-text answer, no database) with the same wrk settings
   in the same run, as the yardstick of what the HTTP stack alone costs;
5. prints requests per second, p50 and p99, the gateway's CPU per request, the ratio of the
   two rates, and the answers the gateway stored;
6. prints, for each run, the CPU per request of every process that shares the machine's
   cores: the gateway, wrk itself and, on PostgreSQL, the server backends serving the bench's
   database (other databases' do not count), with their total and how many cores they kept
   busy: the whole machine's CPU budget of a check and of a no-op request.

    python bench/check_code.py                          # SQLite and PostgreSQL, 1,000,000 codes
    python bench/check_code.py --backends sqlite --codes 100000 --duration 10

Needs wrk (Debian: ``apt-get install -y wrk``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx2
import psutil
from _support import (
    PG_DSN,
    cpu_per_request,
    cpu_seconds,
    database_name,
    free_port,
    load_average,
    pg_admin,
    postgres_cpu,
    postgres_cpu_since,
    postgres_url,
    require_wrk,
    waited_children_cpu,
)
from sqlalchemy import func, select

from smsgate.domain.access_codes import ALNUM
from smsgate.store.db import make_engine, make_sessionmaker
from smsgate.store.migrate import upgrade
from smsgate.store.models import CodeCheck, Merchant, Service

SERVICE_ID = 102
MERCHANT_ID = 1
CODE_LENGTH = 8
SAMPLE = 100_000  # codes wrk picks from (each wrk thread loads them)

# The URL given to wrk ends in "code=" for checks: each request appends a random code.
WRK_SCRIPT = """
local codes = {}
local n = 0
local counter = 0
setup = function(thread)
  counter = counter + 1
  thread:set("id", counter)
end
init = function(args)
  for line in io.lines(args[1]) do n = n + 1; codes[n] = line end
  math.randomseed(os.time() * 100 + (id or 0))
end
request = function()
  if wrk.path:sub(-5) == "code=" then
    return wrk.format("GET", wrk.path .. codes[math.random(n)])
  end
  return wrk.format("GET", wrk.path)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "seconds": %f, "p50_us": %d, "p99_us": %d, '
    .. '"errors": %d, "non2xx": %d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


@dataclass(frozen=True)
class Run:
    requests: int
    seconds: float
    p50_us: int
    p99_us: int
    errors: int
    non2xx: int
    server_cpu: float = 0.0  # CPU seconds the gateway process used during the run
    wrk_cpu: float = 0.0  # CPU seconds of wrk itself
    postgres_cpu: float | None = None  # of the backends serving the bench's database (PG)

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.server_cpu / self.requests if self.requests else 0.0

    def cpu_budget(self) -> str:
        """Every process's CPU per request, their total and the cores they kept busy."""
        cpu = {"gateway": self.server_cpu, "wrk": self.wrk_cpu, "postgres": self.postgres_cpu}
        return cpu_per_request(cpu, self.requests, self.seconds)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def make_codes(count: int, seed: int = 1) -> list[str]:
    """Distinct codes from the service's alphabet (a seeded generator: the bench needs
    reproducible, not secret, codes)."""
    rng = random.Random(seed)
    codes: set[str] = set()
    while len(codes) < count:
        codes.add("".join(rng.choices(ALNUM, k=CODE_LENGTH)))
    return sorted(codes)


SETTINGS = {
    "code_kind": "period_from_issue",
    "validity_seconds": 366 * 86400,
    "uses": 1,
    "code_length": CODE_LENGTH,
    "alphabet": "alnum",
    "reply_template": "Your code: {code}",
    "max_replies_per_mo": 1,
    "ban_after_failures": 10,
    "ban_window_seconds": 600,
    "ban_seconds": 3600,
}


def _sqlite_time(when: datetime) -> str:
    # SQLAlchemy's SQLite DATETIME storage format (naive UTC, microseconds always written).
    return when.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def load_sqlite(path: Path, codes: list[str]) -> None:
    now = datetime.now(UTC)
    until = now + timedelta(days=366)
    db = sqlite3.connect(path)
    try:
        with db:
            db.executemany(
                "INSERT INTO access_codes (service_id, code, mo_id, msisdn, kind, issued_at, "
                "valid_until, lifetime_until, first_used_at, uses_left, uses_count, "
                "period_seconds, status) VALUES (?, ?, NULL, '', 'period_from_issue', ?, ?, "
                "NULL, NULL, NULL, 0, NULL, 'active')",
                ((SERVICE_ID, code, _sqlite_time(now), _sqlite_time(until)) for code in codes),
            )
        db.execute("ANALYZE")
    finally:
        db.close()


async def provision(database_url: str) -> None:
    """The merchant and its access-code service (the codes are bulk-loaded beside)."""
    now = datetime.now(UTC)
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            session.add(
                Merchant(
                    id=MERCHANT_ID,
                    login="bench",
                    password_hash="x",
                    currency="BGN",
                    created_at=now,
                    updated_at=now,
                )
            )
            await session.flush()
            session.add(
                Service(
                    id=SERVICE_ID,
                    merchant_id=MERCHANT_ID,
                    type="access_code",
                    keyword="KOD",
                    settings=SETTINGS,
                    signing_secret="whsec_bench",
                    created_at=now,
                    updated_at=now,
                )
            )
    finally:
        await engine.dispose()


async def load_postgres(dsn: str, codes: list[str]) -> None:
    now = datetime.now(UTC)
    until = now + timedelta(days=366)
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.copy_records_to_table(
                "access_codes",
                columns=[
                    "service_id",
                    "code",
                    "msisdn",
                    "kind",
                    "issued_at",
                    "valid_until",
                    "uses_count",
                    "status",
                ],
                records=(
                    (SERVICE_ID, code, "", "period_from_issue", now, until, 0, "active")
                    for code in codes
                ),
            )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


@contextmanager
def gateway(database_url: str) -> Iterator[tuple[str, psutil.Process]]:
    port = free_port()
    env = dict(os.environ)
    env.update(
        SMSGATE_DATABASE_URL=database_url, SMSGATE_HTTP_PORT=str(port), SMSGATE_LOG_LEVEL="WARNING"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "smsgate", "serve", "--no-worker", "--no-links"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"gateway exited: {process.stderr.read() if process.stderr else ''}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError("gateway did not start in 60 s")
            try:
                if httpx2.get(f"{url}/bench/noop", timeout=1).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            time.sleep(0.1)
        yield url, psutil.Process(process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def wrk(
    binary: str,
    url: str,
    path: str,
    script: Path,
    codes_file: Path,
    args: argparse.Namespace,
    server: psutil.Process,
    database: str | None = None,
) -> Run:
    """One wrk run; ``database``: the PostgreSQL database whose backends' CPU counts."""
    command = [
        binary,
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{args.duration}s",
        "--timeout",
        "5s",
        "-s",
        str(script),
        f"{url}{path}",
        "--",
        str(codes_file),
    ]
    pg_before = postgres_cpu(database) if database else {}
    before, wrk_before = cpu_seconds(server), waited_children_cpu()
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    used, wrk_used = cpu_seconds(server) - before, waited_children_cpu() - wrk_before
    pg_used = postgres_cpu_since(database, pg_before) if database else None
    match = re.search(r"^RESULT (\{.*\})$", output, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    return Run(
        **json.loads(match.group(1)), server_cpu=used, wrk_cpu=wrk_used, postgres_cpu=pg_used
    )


def answers(database_url: str) -> dict[str, int]:
    async def count() -> dict[str, int]:
        engine = make_engine(database_url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    select(CodeCheck.answer, func.count()).group_by(CodeCheck.answer)
                )
                return {answer: int(n) for answer, n in rows}
        finally:
            await engine.dispose()

    return asyncio.run(count())


def report(backend: str, check: Run, noop: Run, stored: dict[str, int]) -> None:
    ratio = check.rps / noop.rps if noop.rps else 0.0
    print(f"\n== {backend} ==")
    for name, run in (("check_code.php", check), ("noop", noop)):
        print(
            f"{name:15s} {run.rps:9,.0f} req/s   p50 {run.p50_us / 1000:6.2f} ms   "
            f"p99 {run.p99_us / 1000:6.2f} ms   gateway CPU {run.cpu_ms_per_request:.2f} ms/req   "
            f"errors {run.errors}  non-2xx {run.non2xx}"
        )
    print(f"check / noop    {ratio:.2f}x")
    for name, run in (("check_code.php", check), ("noop", noop)):
        print(f"{name:15s} CPU per request  {run.cpu_budget()}")
    print(f"answers stored  {stored}")


def bench(backend: str, codes: list[str], args: argparse.Namespace, binary: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        codes_file = workdir / "codes.txt"
        sample = random.Random(2).sample(codes, min(SAMPLE, len(codes)))
        codes_file.write_text("\n".join(sample) + "\n")
        script = workdir / "check.lua"
        script.write_text(WRK_SCRIPT)
        pg_name = f"smsgate_bench_{os.getpid()}"
        if backend == "sqlite":
            path = workdir / "bench.db"
            url = f"sqlite+aiosqlite:///{path}"
            asyncio.run(upgrade(url))
            asyncio.run(provision(url))
            started = time.monotonic()
            load_sqlite(path, codes)
        else:
            asyncio.run(pg_admin(f'CREATE DATABASE "{pg_name}"'))
            url = postgres_url(pg_name)
            asyncio.run(upgrade(url))
            asyncio.run(provision(url))
            started = time.monotonic()
            asyncio.run(load_postgres(f"{PG_DSN}/{pg_name}", codes))
        print(f"{backend}: {len(codes):,} codes loaded in {time.monotonic() - started:.1f} s")
        try:
            with gateway(url) as (base, server):
                wrk(
                    binary,
                    base,
                    "/bench/noop",
                    script,
                    codes_file,
                    argparse.Namespace(
                        threads=args.threads, connections=args.connections, duration=2
                    ),
                    server,
                )  # warm-up
                uri = f"/users/check_code.php?user_id={MERCHANT_ID}&service_id={SERVICE_ID}&code="
                on = database_name(url) if backend == "postgres" else None
                check = wrk(binary, base, uri, script, codes_file, args, server, on)
                noop = wrk(binary, base, "/bench/noop", script, codes_file, args, server, on)
            report(backend, check, noop, answers(url))
        finally:
            if backend == "postgres":
                asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backends", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"]
    )
    parser.add_argument("--codes", type=int, default=1_000_000)
    parser.add_argument("--duration", type=int, default=15, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    binary = require_wrk()
    print(load_average())
    started = time.monotonic()
    codes = make_codes(args.codes)
    print(f"{len(codes):,} codes generated in {time.monotonic() - started:.1f} s")
    for backend in args.backends:
        bench(backend, codes, args, binary)
    print(f"\n{load_average()}")


if __name__ == "__main__":
    main()
