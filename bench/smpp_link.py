"""submit_sm throughput of one operator link against the simulator in another process.

Two paths, so that we see where the time goes:

- ``raw``: an SmppSession bound as a transceiver pumps submit_sm with ``start_request``
  (no database): the ceiling of the SMPP layer.
- ``link``: MT rows queued in a SQLite database, an OperatorLink claims, segments, submits
  and records every outcome, as ``smsgate serve`` does. Timed until every MT is
  ``submitted`` in the database.

The simulator runs as ``smsgate simulator`` in a subprocess (``--inbox-limit 0``). CPU is
the user+system time of each process over the run, as a share of one core.

    python bench/smpp_link.py                        # windows 1, 10, 50; both paths
    python bench/smpp_link.py --windows 10 --messages 50000 --paths link --dlr
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import dataclasses
import os
import pstats
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from _support import cpu_seconds, free_port, pg_admin, postgres_url
from sqlalchemy import func, insert, select

from smsgate.config import Settings
from smsgate.links.link import OperatorLink
from smsgate.links.settings import link_settings
from smsgate.runtime import Runtime
from smsgate.smpp import BindTransceiver, SessionConfig, SubmitSm, connect
from smsgate.store.db import make_engine, make_sessionmaker
from smsgate.store.migrate import upgrade
from smsgate.store.models import MtMessage, Operator

PROFILE = int(os.environ.get("SMPP_LINK_PROFILE", "0"))  # print the top N functions
SYSTEM_ID = "bench"
PASSWORD = "bench"
OPERATOR = "bench-op"
CONFIG = f"""
[[operators]]
id = "{OPERATOR}"
country = "BG"
kind = "smpp"
host = "127.0.0.1"
port = 1
system_id = "{SYSTEM_ID}"
password = "{PASSWORD}"
tps = 100000
window = 50

[[short_numbers]]
number = "1851"
operator = "{OPERATOR}"
price = "1.00"
currency = "BGN"
"""


@dataclasses.dataclass
class Result:
    path: str
    window: int
    messages: int
    seconds: float
    cpu_ours: float
    cpu_simulator: float
    delivered_seconds: float | None = None

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def line(self) -> str:
        per_message = 1e6 / self.messages
        return (
            f"{self.path:<5} window {self.window:>3}: {self.messages:>6} submit_sm in "
            f"{self.seconds:6.2f} s = {self.rate:6.0f} msg/s | CPU link process "
            f"{100 * self.cpu_ours / self.seconds:3.0f}% "
            f"({self.cpu_ours * per_message:4.0f} us/msg)"
            f", simulator {100 * self.cpu_simulator / self.seconds:3.0f}% "
            f"({self.cpu_simulator * per_message:4.0f} us/msg)"
            + (
                f" | all delivered after {self.delivered_seconds:.2f} s "
                f"= {self.messages / self.delivered_seconds:.0f} msg/s"
                if self.delivered_seconds
                else ""
            )
        )


@contextlib.asynccontextmanager
async def simulator_process(workdir: Path, dlr: bool) -> AsyncIterator[tuple[int, psutil.Process]]:
    config = workdir / "bench.toml"
    config.write_text(CONFIG)
    port, http_port = free_port(), free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "smsgate",
        "simulator",
        "--config",
        str(config),
        "--smpp-port",
        str(port),
        "--http-port",
        str(http_port),
        "--inbox-limit",
        "0",
        "--log-level",
        "WARNING",
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                if time.monotonic() > deadline or process.returncode is not None:
                    raise RuntimeError("the simulator did not start") from None
                await asyncio.sleep(0.1)
        yield port, psutil.Process(process.pid)
    finally:
        process.terminate()
        try:
            async with asyncio.timeout(10):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


@contextlib.contextmanager
def measured(simulator: psutil.Process) -> Iterator[dict[str, float]]:
    ours = psutil.Process()
    figures: dict[str, float] = {}
    start_ours, start_sim = cpu_seconds(ours), cpu_seconds(simulator)
    started = time.perf_counter()
    yield figures
    figures["seconds"] = time.perf_counter() - started
    figures["cpu_ours"] = cpu_seconds(ours) - start_ours
    figures["cpu_simulator"] = cpu_seconds(simulator) - start_sim


def pdu(n: int) -> SubmitSm:
    return SubmitSm(
        source_addr="1851",
        source_addr_ton=0,
        source_addr_npi=1,
        destination_addr=f"35988{n % 10_000_000:07d}",
        dest_addr_ton=1,
        dest_addr_npi=1,
        short_message=b"Benchmark message number %d" % n,
    )


async def run_raw(port: int, simulator: psutil.Process, window: int, messages: int) -> Result:
    session = await connect(
        "127.0.0.1",
        port,
        config=SessionConfig(window=window, enquire_link_interval=None, inactivity_timeout=None),
    )
    await session.bind(BindTransceiver(system_id=SYSTEM_ID, password=PASSWORD))
    done = asyncio.Event()
    answered = 0

    def on_done(_future: asyncio.Future[Any]) -> None:
        nonlocal answered
        answered += 1
        if answered == messages:
            done.set()

    with measured(simulator) as figures:
        for n in range(messages):
            future = await session.start_request(pdu(n))
            future.add_done_callback(on_done)
        await done.wait()
    await session.unbind()
    return Result("raw", window, messages, **figures)


async def queue_mts(runtime: Runtime, messages: int) -> None:
    now = datetime.now(UTC)
    async with runtime.sessions() as session, session.begin():
        session.add(
            Operator(
                id=OPERATOR,
                country="BG",
                kind="smpp",
                host="127.0.0.1",
                port=0,
                system_id=SYSTEM_ID,
                password=PASSWORD,
                tps=100_000,
                window=10,
                settings={},
                created_at=now,
                updated_at=now,
            )
        )
        await session.flush()
        rows = [
            {
                "operator_id": OPERATOR,
                "msisdn": f"35988{n:07d}",
                "sender": "1851",
                "text": f"Benchmark message number {n}",
                "encoding": "gsm7",
                "parts": 1,
                "status": "queued",
                "error_code": "",
                "cost_minor": 0,
                "currency": "",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                "updated_at": now,
                "details": {},
            }
            for n in range(messages)
        ]
        connection = await session.connection()
        await connection.execute(insert(MtMessage.__table__), rows)


async def count_status(runtime: Runtime, statuses: tuple[str, ...]) -> int:
    async with runtime.sessions() as session:
        count = await session.execute(
            select(func.count()).select_from(MtMessage).where(MtMessage.status.in_(statuses))
        )
        return int(count.scalar_one())


@contextlib.asynccontextmanager
async def database(workdir: Path, postgres: str | None) -> AsyncIterator[str]:
    """A fresh, migrated database: a SQLite file, or a PostgreSQL database dropped after."""
    if postgres is None:
        url = f"sqlite+aiosqlite:///{workdir}/link-{time.monotonic_ns()}.db"
        await upgrade(url)
        yield url
        return
    name = f"smsgate_bench_{os.getpid()}_{time.monotonic_ns()}"
    await pg_admin(f'CREATE DATABASE "{name}"', postgres)
    try:
        url = postgres_url(name, server=postgres.rsplit("/", 1)[0])
        await upgrade(url)
        yield url
    finally:
        await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', postgres)


async def run_link(
    port: int,
    simulator: psutil.Process,
    window: int,
    messages: int,
    dlr: bool,
    url: str,
) -> Result:
    engine = make_engine(url)
    runtime = Runtime(
        settings=Settings(database_url=url), engine=engine, sessions=make_sessionmaker(engine)
    )
    await queue_mts(runtime, messages)
    settings = link_settings(
        operator_id=OPERATOR,
        host="127.0.0.1",
        port=port,
        system_id=SYSTEM_ID,
        password=PASSWORD,
        tps=100_000,
        window=window,
        settings={"dlr_request": dlr},
    )
    link = OperatorLink(settings, runtime)
    profile = cProfile.Profile() if PROFILE else None
    try:
        if profile is not None:
            profile.enable()
        with measured(simulator) as figures:
            task = asyncio.create_task(link.run())
            while link.state.submitted < messages:
                await asyncio.sleep(0.01)
                if task.done():
                    raise RuntimeError(f"the link stopped: {link.state.last_error}")
            await link.submitter.writer.flush()
        if profile is not None:
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(PROFILE)
        accepted = await count_status(runtime, ("submitted", "delivered"))
        assert accepted == messages, "every MT recorded as submitted"
        if dlr:
            # Receipts: time until every MT is delivered, from the start of the run.
            started = time.perf_counter() - figures["seconds"]
            deadline = time.monotonic() + 300
            while await count_status(runtime, ("delivered",)) < messages:
                if time.monotonic() > deadline:
                    raise RuntimeError("receipts did not all arrive in 300 s")
                await asyncio.sleep(0.05)
            figures["delivered_seconds"] = time.perf_counter() - started
        link.stop()
        await task
    finally:
        await engine.dispose()
    return Result("link", window, messages, **figures)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", default="1,10,50")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--window1-messages", type=int, default=5_000)
    parser.add_argument("--paths", default="raw,link")
    parser.add_argument("--dlr", action="store_true", help="ask for receipts (link path)")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="run the link path on PostgreSQL instead of SQLite, e.g. "
        "postgresql://postgres@127.0.0.1:5432/postgres (a scratch database is made and dropped)",
    )
    args = parser.parse_args()
    windows = [int(w) for w in args.windows.split(",")]
    paths = args.paths.split(",")
    receipts = "on" if args.dlr else "off"
    store = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, receipts {receipts}, "
        f"link path on {store}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for window in windows:
            messages = args.window1_messages if window == 1 else args.messages
            for path in paths:
                async with simulator_process(workdir, args.dlr) as (port, simulator):
                    if path == "raw":
                        result = await run_raw(port, simulator, window, messages)
                    else:
                        async with database(workdir, args.postgres) as url:
                            result = await run_link(
                                port, simulator, window, messages, args.dlr, url
                            )
                print(result.line(), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
