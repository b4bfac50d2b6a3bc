"""MO-to-reply latency of access-code services: from the MO injected at the built-in operator
until the reply's submit_sm (with the code) arrives back at it.

The simulator runs in this process (so the arrival time of each reply is read from its
handset inbox, stamped when the submit_sm arrived); the gateway runs as
``smsgate serve --no-worker`` in a subprocess with its operator link bound to the simulator
over SMPP on loopback. MOs are injected at a steady ``--rate`` for ``--seconds``, each from a
handset of its own; the latency of an MO is its reply's arrival minus its injection.

    python bench/mo_reply.py                              # 300 MO/s for 10 s, SQLite and PostgreSQL
    python bench/mo_reply.py --backends sqlite --rate 100 --seconds 5
    python bench/mo_reply.py --backends sqlite --profile /tmp/gw.prof   # cProfile the gateway

Besides the latencies it prints the CPU time (user + system) per MO of the gateway, of this
process (simulator and injector) and of the bench database's PostgreSQL backends during the
timed part, and the load average: the CPU figures depend less on what else the machine runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
from _support import (
    cpu_seconds,
    database_name,
    free_port,
    pg_admin,
    postgres_cpu,
    postgres_cpu_since,
    postgres_url,
)

from smsgate.domain.provisioning import parse_toml
from smsgate.services.provisioning import apply
from smsgate.simulator import Simulator, SimulatorOptions
from smsgate.simulator.config import config_from_document
from smsgate.store.db import make_engine, make_sessionmaker
from smsgate.store.migrate import upgrade

OPERATOR = "bench-op"
PROVISIONING = """
[[operators]]
id = "bench-op"
country = "BG"
kind = "smpp"
host = "127.0.0.1"
port = {smpp_port}
system_id = "bench"
password = "bench"
tps = 5000
window = 100

[[short_numbers]]
number = "1851"
operator = "bench-op"
price = "2.40"
currency = "BGN"

[[merchants]]
id = 1
login = "bench"
password = "bench-password"
currency = "BGN"

[[services]]
id = 102
merchant = 1
type = "access_code"
keyword = "KOD"
short_numbers = ["1851"]
code_kind = "uses"
uses = 1
reply_template = "Your code: {{code}}"
"""


async def provision(database_url: str, smpp_port: int) -> None:
    await upgrade(database_url)
    engine = make_engine(database_url)
    try:
        document = parse_toml(PROVISIONING.format(smpp_port=smpp_port), source="bench.toml")
        await apply(make_sessionmaker(engine), document, actor="bench", now=datetime.now(UTC))
    finally:
        await engine.dispose()


def start_gateway(database_url: str, profile: str | None) -> subprocess.Popen[str]:
    port = free_port()
    env = dict(os.environ)
    env.update(
        SMSGATE_DATABASE_URL=database_url,
        SMSGATE_HTTP_PORT=str(port),
        SMSGATE_LOG_LEVEL="WARNING",
    )
    profiling = ["-m", "cProfile", "-o", profile] if profile else []
    process = subprocess.Popen(
        [sys.executable, *profiling, "-m", "smsgate", "serve", "--no-worker", "--no-migrate"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process


async def run(database_url: str, args: argparse.Namespace) -> list[float]:
    config = config_from_document(
        parse_toml(PROVISIONING.format(smpp_port=1), source="bench.toml"),
        SimulatorOptions(inbox_limit=10),
    )
    simulator = Simulator(config)
    smpp_port = await simulator.start("127.0.0.1", 0)
    await provision(database_url, smpp_port)
    process = start_gateway(database_url, args.profile)
    gateway = psutil.Process(process.pid)
    ours = psutil.Process()
    try:
        async with asyncio.timeout(60):
            await simulator.wait_for_receiver(OPERATOR)
        # Warm-up: a few MOs end to end before the clock starts.
        for i in range(20):
            await simulator.inject_mo(f"35989{i:07d}", "1851", "KOD", OPERATOR)
        await _replies(simulator, [f"35989{i:07d}" for i in range(20)], 20)
        count = int(args.rate * args.seconds)
        sent: dict[str, datetime] = {}
        cpu_before = (cpu_seconds(gateway), cpu_seconds(ours))
        database = database_name(database_url)
        postgres_before = postgres_cpu(database)
        started = time.perf_counter()
        for i in range(count):
            due = started + i / args.rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            msisdn = f"35988{i:07d}"
            sent[msisdn] = datetime.now(UTC)
            await simulator.inject_mo(msisdn, "1851", "KOD", OPERATOR, wait=False)
        achieved = count / (time.perf_counter() - started)
        arrived = await _replies(simulator, list(sent), 30)
        cpu_after = (cpu_seconds(gateway), cpu_seconds(ours))
        pg = 1000 * postgres_cpu_since(database, postgres_before) / count
        latencies = [(arrived[m] - sent[m]).total_seconds() * 1000 for m in sent if m in arrived]
        print(f"  injected {count} MOs at {achieved:.0f}/s; replies {len(latencies)}/{count}")
        gw, bench_ = (
            1000 * (after - before) / count
            for before, after in zip(cpu_before, cpu_after, strict=True)
        )
        postgres = f"  postgres {pg:.2f} ms" if "postgresql" in database_url else ""
        print(f"  CPU per MO: gateway {gw:.2f} ms  bench {bench_:.2f} ms{postgres}")
        print("  load average: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
        return latencies
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        await simulator.stop()


async def _replies(simulator: Simulator, phones: list[str], within: float) -> dict[str, datetime]:
    """When each phone's first message arrived; waits up to ``within`` seconds for all."""
    arrived: dict[str, datetime] = {}
    deadline = time.monotonic() + within
    while len(arrived) < len(phones) and time.monotonic() < deadline:
        for phone in phones:
            if phone not in arrived:
                inbox = simulator.inbox(phone)
                if inbox:
                    arrived[phone] = inbox[0].at
        await asyncio.sleep(0.05)
    return arrived


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def bench(backend: str, args: argparse.Namespace) -> None:
    print(f"== {backend} ==")
    with tempfile.TemporaryDirectory() as tmp:
        name = f"smsgate_mobench_{os.getpid()}"
        if backend == "sqlite":
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        else:
            await pg_admin(f'CREATE DATABASE "{name}"')
            url = postgres_url(name)
        try:
            latencies = await run(url, args)
        finally:
            if backend == "postgres":
                await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if latencies:
        print(
            f"  MO -> reply latency: p50 {percentile(latencies, 50):.1f} ms  "
            f"p95 {percentile(latencies, 95):.1f} ms  p99 {percentile(latencies, 99):.1f} ms  "
            f"max {max(latencies):.1f} ms  mean {statistics.fmean(latencies):.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backends", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"]
    )
    parser.add_argument("--rate", type=float, default=300.0, help="MOs per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--profile", help="write the gateway's cProfile statistics to this file")
    args = parser.parse_args()
    for backend in args.backends:
        asyncio.run(bench(backend, args))


if __name__ == "__main__":
    main()
