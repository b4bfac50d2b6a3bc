"""What the benchmark scripts share: ports, wrk, PostgreSQL scratch databases, CPU accounting.

The scripts run as ``python bench/<name>.py``, which puts ``bench/`` first on ``sys.path``, so
they import this module as ``_support`` (``bench/__init__.py`` does the same for an import as
``bench.<name>``).

CPU figures are user + system seconds. On a machine of two cores the gateway, the load
generator and PostgreSQL share them, so a bench reports each of them, not only the gateway.
"""

from __future__ import annotations

import os
import resource
import shutil
import socket
import sys
from collections.abc import Mapping

import asyncpg
import psutil

# The PostgreSQL server the benches make their scratch databases on (no database name).
PG_DSN = os.environ.get("SMSGATE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_wrk() -> str:
    """The path of the wrk binary; exits with how to install it when it is missing."""
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("wrk is not installed. On Debian/Ubuntu: apt-get install -y wrk")
    return wrk


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, printed beside figures that other work on the
    machine skews."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


# --- CPU time ------------------------------------------------------------------------------------


def cpu_seconds(process: psutil.Process) -> float:
    """CPU seconds ``process`` has used so far; 0.0 once it has gone."""
    try:
        times = process.cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return float(times.user + times.system)


def waited_children_cpu() -> float:
    """CPU seconds of this process's children that have ended and been waited for (a load
    generator run to completion, say): the difference around a run is that run's share."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def postgres_cpu(database: str) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend serving ``database``, by pid (a backend's
    process title names its database): other work on the server does not count."""
    found: dict[int, float] = {}
    for process in psutil.process_iter(["name", "cmdline"]):
        if not (process.info.get("name") or "").startswith("postgres"):
            continue
        title = " ".join(process.info.get("cmdline") or ())
        if f" {database} " in f" {title} ":
            # A backend that ends meanwhile is left out rather than counted as 0.0 (which
            # would subtract its whole past from postgres_cpu_since).
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            found[process.pid] = float(times.user + times.system)
    return found


def postgres_cpu_since(database: str, before: Mapping[int, float]) -> float:
    """The CPU seconds ``database``'s backends used since ``before`` (a ``postgres_cpu``):
    backends that started meanwhile count whole, and those that ended meanwhile are lost
    (a connection pool keeps its backends, so little is)."""
    now = postgres_cpu(database)
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in now.items())


def cpu_per_request(cpu: Mapping[str, float | None], requests: int, wall: float) -> str:
    """``cpu`` (CPU seconds by process, over ``wall`` seconds) per request, with the total and
    how many of the machine's cores it kept busy: the whole budget a request costs. A process
    given as None (PostgreSQL on SQLite) is left out."""
    per = 1000 / max(requests, 1)
    used = {name: seconds for name, seconds in cpu.items() if seconds is not None}
    parts = [f"{name} {seconds * per:.3f} ms" for name, seconds in used.items()]
    total = sum(used.values())
    busy = total / wall if wall > 0 else 0.0
    return (
        "   ".join([*parts, f"total {total * per:.3f} ms"])
        + f"   ({busy:.2f} of {os.cpu_count()} cores busy)"
    )


# --- PostgreSQL scratch databases ------------------------------------------------------------


async def pg_admin(statement: str, admin_dsn: str = f"{PG_DSN}/postgres") -> None:
    """Run one statement (CREATE/DROP DATABASE) on its own connection to ``admin_dsn``."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def postgres_url(name: str, server: str = PG_DSN) -> str:
    """The gateway's (SQLAlchemy, asyncpg) URL of database ``name`` on ``server``."""
    return f"postgresql+asyncpg://{server.split('://', 1)[1]}/{name}"


def database_name(url: str) -> str:
    """The database a URL names (its last path segment, without a query)."""
    return url.rsplit("/", 1)[-1].split("?", 1)[0]
