"""Bulk SMS throughput: how fast send_bulk.php accepts, and how fast messages make the whole
round trip.

Two parts, each on a fresh database (a SQLite file, or a PostgreSQL database on
127.0.0.1:5432) provisioned with one merchant and one bulk service without limits:

``accept``
    ``smsgate serve --no-worker --no-links`` in a subprocess; wrk drives
    ``GET /users/send_bulk.php`` (a random recipient per request) for ``--duration`` seconds.
    Reports requests per second, p50/p99 latency, the gateway's CPU per request, and checks
    that every request left exactly one queued MT (every answer was MSG_OK).

``e2e``
    ``smsgate simulator`` and ``smsgate serve`` (API, worker, operator link) in subprocesses,
    the merchant's DLR script in this process. wrk drives send_bulk.php for ``--duration``
    seconds; each accepted message is submitted over SMPP to the simulator, which sends its
    receipt back; the gateway turns each receipt into a signed callback to the DLR script.
    The end-to-end rate is the messages whose final callback arrived, divided by the time from
    the first request to the last callback (the backlog is drained, up to ``--drain``
    seconds). When it misses ``--target`` the CPU time of each process is printed (where the
    time goes); ``--profile`` also runs the gateway under cProfile and prints its top
    functions.

    python bench/bulk.py                                   # both parts, both databases, 60 s
    python bench/bulk.py --backends sqlite --parts accept --duration 10

Needs wrk (Debian: ``apt-get install -y wrk``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pstats
import re
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx2
import psutil
from _support import (
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

from smsgate.domain.provisioning import parse_toml
from smsgate.services.provisioning import apply
from smsgate.store.db import make_engine, make_sessionmaker
from smsgate.store.migrate import upgrade
from smsgate.store.models import MtMessage, WebhookEvent

SERVICE_ID = 201
OPERATOR = "sim-bg"
TEXT = "Your invoice 2026-03 is ready: 42.50 BGN"

PROVISIONING = """
[[operators]]
id = "sim-bg"
country = "BG"
kind = "smpp"
host = "127.0.0.1"
port = {smpp_port}
system_id = "smsgate"
password = "secret"
tps = 100000
window = {window}

[[merchants]]
id = 1
login = "bench"
password = "bench-password"
currency = "BGN"
credit = "10000000.00"

[[services]]
id = 201
merchant = 1
type = "bulk"
sender = "SHOP"
price_per_part = "0.01"
{dlr}
"""

SIMULATOR_CONFIG = """
[[operators]]
id = "sim-bg"
country = "BG"
kind = "smpp"
host = "127.0.0.1"
port = 1
system_id = "smsgate"
password = "secret"
"""

# A random Bulgarian mobile number per request; answers other than MSG_OK are counted.
WRK_SCRIPT = """
local counter = 0
local threads = {}
setup = function(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end
init = function(args)
  math.randomseed(os.time() * 100 + (id or 0))
  refused = 0
end
request = function()
  return wrk.format("GET", wrk.path .. string.format("35988%07d", math.random(0, 9999999)))
end
response = function(status, headers, body)
  if body:sub(1, 6) ~= "MSG_OK" then refused = refused + 1 end
end
done = function(summary, latency, requests)
  local e = summary.errors
  local not_ok = 0
  for _, thread in ipairs(threads) do not_ok = not_ok + thread:get("refused") end
  io.write(string.format(
    'RESULT {"requests": %d, "seconds": %f, "p50_us": %d, "p99_us": %d, '
    .. '"errors": %d, "non2xx": %d, "not_ok": %d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status, not_ok))
end
"""


@dataclass(frozen=True)
class WrkRun:
    requests: int
    seconds: float
    p50_us: int
    p99_us: int
    errors: int
    non2xx: int
    not_ok: int  # answers other than MSG_OK

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


# --- the merchant's DLR script ---------------------------------------------------------------


@dataclass
class DlrScript:
    """A keep-alive HTTP/1.1 server that answers 200 to every callback and counts the
    message-level final ones (one per message)."""

    callbacks: int = 0
    finals: set[int] = field(default_factory=set)
    last_at: float = 0.0
    port: int = 0
    _server: asyncio.Server | None = None

    FINAL = (b"delivered", b"undelivered", b"expired", b"rejected", b"failed")

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/dlr"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:].strip())
                body = await reader.readexactly(length) if length else b""
                self._count(body or head.split(b" ", 2)[1].partition(b"?")[2])
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    def _count(self, form: bytes) -> None:
        self.callbacks += 1
        self.last_at = time.perf_counter()
        if b"scope=message" not in form:
            return
        status = re.search(rb"(?:^|&)status=([a-z]+)", form)
        ident = re.search(rb"(?:^|&)id=([0-9]+)", form)
        if status and ident and status.group(1) in self.FINAL:
            self.finals.add(int(ident.group(1)))


# --- databases and processes -----------------------------------------------------------------


@contextlib.contextmanager
def database(backend: str, workdir: Path, label: str) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{workdir / label}.db"
        return
    name = f"smsgate_bench_bulk_{os.getpid()}_{label}"
    asyncio.run(pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield postgres_url(name)
    finally:
        asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def provision(url: str, *, smpp_port: int, window: int, dlr_url: str | None) -> None:
    await upgrade(url)
    text = PROVISIONING.format(
        smpp_port=smpp_port, window=window, dlr=f'dlr_url = "{dlr_url}"' if dlr_url else ""
    )
    engine = make_engine(url)
    try:
        await apply(make_sessionmaker(engine), parse_toml(text), actor="bench", now=_now())
    finally:
        await engine.dispose()


def _now() -> datetime:
    return datetime.now(UTC)


@contextlib.asynccontextmanager
async def process(
    args: list[str], env: dict[str, str], ready: str | None, name: str
) -> AsyncIterator[psutil.Process]:
    """Start a subprocess and wait (bounded) until ``ready`` (a URL) answers; without a URL,
    until it has run for a second without exiting."""
    child = await asyncio.create_subprocess_exec(
        *args, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        settled_at = time.monotonic() + 1
        async with httpx2.AsyncClient(timeout=1) as client:
            while True:
                if child.returncode is not None:
                    error = await child.stderr.read() if child.stderr else b""
                    raise RuntimeError(f"{name} exited: {error.decode()[-2000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start in 60 s")
                if ready is None:
                    if time.monotonic() > settled_at:
                        break
                else:
                    with contextlib.suppress(httpx2.TransportError):
                        if (await client.get(ready)).status_code < 500:
                            break
                await asyncio.sleep(0.1)
        yield psutil.Process(child.pid)
    finally:
        if child.returncode is None:
            child.terminate()
            try:
                async with asyncio.timeout(60):
                    await child.wait()
            except TimeoutError:
                child.kill()
                await child.wait()


def gateway_args(components: list[str], profile: Path | None) -> list[str]:
    prefix = [sys.executable]
    if profile is not None:
        prefix += ["-m", "cProfile", "-o", str(profile)]
    return [*prefix, "-m", "smsgate", "serve", *components]


def gateway_env(url: str, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        SMSGATE_DATABASE_URL=url,
        SMSGATE_HTTP_PORT=str(port),
        SMSGATE_LOG_LEVEL="WARNING",
        SMSGATE_WEBHOOK_ALLOW_PRIVATE="true",
    )
    return env


async def wrk(binary: str, url: str, script: Path, args: argparse.Namespace) -> WrkRun:
    command = [
        binary,
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{args.duration}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
    ]
    child = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await child.communicate()
    match = re.search(r"^RESULT (\{.*\})$", out.decode(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"unexpected wrk output:\n{out.decode()}\n{err.decode()}")
    return WrkRun(**json.loads(match.group(1)))


async def count_mts(url: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(MtMessage.status, func.count()).group_by(MtMessage.status)
            )
            return {status: int(n) for status, n in rows}
    finally:
        await engine.dispose()


async def count_events(url: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(WebhookEvent.status, func.count()).group_by(WebhookEvent.status)
            )
            return {status: int(n) for status, n in rows}
    finally:
        await engine.dispose()


async def settled_count(url: str) -> int:
    """The MT count once requests still in the gateway when wrk stopped are done (bounded)."""
    previous = -1
    for _ in range(100):
        count = sum((await count_mts(url)).values())
        if count == previous:
            return count
        previous = count
        await asyncio.sleep(0.3)
    return previous


def send_path(port: int) -> str:
    return (
        f"http://127.0.0.1:{port}/users/send_bulk.php?user_id=1&service_id={SERVICE_ID}"
        f"&text={TEXT.replace(' ', '%20').replace(':', '%3A')}&msisdn="
    )


# --- the two parts ----------------------------------------------------------------------------


async def bench_accept(
    backend: str, url: str, binary: str, script: Path, args: argparse.Namespace
) -> None:
    await provision(url, smpp_port=1, window=10, dlr_url=None)
    port = free_port()
    keep = Path(args.profile_dir or script.parent)
    profile = keep / f"accept-{backend}.prof" if args.profile else None
    async with process(
        gateway_args(["--no-worker", "--no-links"], profile),
        gateway_env(url, port),
        f"http://127.0.0.1:{port}/healthz",
        "gateway",
    ) as gateway:
        warm = argparse.Namespace(**{**vars(args), "duration": 2})
        await wrk(binary, send_path(port), script, warm)
        before_mts = await settled_count(url)
        before_cpu, before_pg = cpu_seconds(gateway), postgres_cpu(database_name(url))
        before_wrk = waited_children_cpu()
        run = await wrk(binary, send_path(port), script, args)
        used = cpu_seconds(gateway) - before_cpu
        wrk_cpu = waited_children_cpu() - before_wrk
        pg_used = (
            postgres_cpu_since(database_name(url), before_pg) if backend == "postgres" else None
        )
        stored = await settled_count(url) - before_mts
    print(f"\n== accept, {backend} ==")
    print(
        f"send_bulk.php  {run.rps:8,.0f} req/s   p50 {run.p50_us / 1000:6.2f} ms   "
        f"p99 {run.p99_us / 1000:6.2f} ms   gateway CPU "
        f"{1000 * used / max(run.requests, 1):.2f} ms/req   errors {run.errors}   "
        f"non-2xx {run.non2xx}"
    )
    per_request = {"gateway": used, "postgres": pg_used, "wrk": wrk_cpu}
    print(f"CPU per request  {cpu_per_request(per_request, run.requests, run.seconds)}")
    print(load_average())
    # Requests still in the gateway when wrk stopped are queued but not counted by wrk.
    fits = run.not_ok == 0 and run.requests <= stored <= run.requests + args.connections
    verdict = "every answer MSG_OK, one MT each" if fits else "MISMATCH"
    print(f"answers {run.requests:,} ({run.not_ok} not MSG_OK), MTs queued {stored:,}: {verdict}")
    if profile is not None and profile.exists():
        print("gateway profile (top 25 by own time):")
        pstats.Stats(str(profile)).sort_stats("tottime").print_stats(25)


async def bench_e2e(
    backend: str, url: str, binary: str, script: Path, args: argparse.Namespace, workdir: Path
) -> None:
    receiver = DlrScript()
    await receiver.start()
    config = workdir / f"sim-{backend}.toml"
    config.write_text(SIMULATOR_CONFIG)
    smpp_port, sim_http = free_port(), free_port()
    await provision(url, smpp_port=smpp_port, window=args.window, dlr_url=receiver.url)
    port = free_port()
    keep = Path(args.profile_dir) if args.profile_dir else workdir
    profile = keep / f"gateway-{backend}.prof" if args.profile else None
    simulator_args = [
        sys.executable, "-m", "smsgate", "simulator", "--config", str(config),
        "--smpp-port", str(smpp_port), "--http-port", str(sim_http),
        "--inbox-limit", "0", "--log-level", "WARNING",
    ]  # fmt: skip
    env = gateway_env(url, port)
    try:
        async with contextlib.AsyncExitStack() as stack:
            simulator = await stack.enter_async_context(
                process(simulator_args, dict(os.environ), f"http://127.0.0.1:{sim_http}/sim/stats",
                        "simulator")
            )  # fmt: skip
            gateways: dict[str, psutil.Process] = {}
            if args.processes > 1:
                # The parts `smsgate serve` can run apart (docs/settings.md, "Running"), each in
                # a process of its own: the API migrates, the others start after it.
                together = args.processes == 2
                api_args = ["--no-worker"] if together else ["--no-worker", "--no-links"]
                api_name = "gateway API+links" if together else "gateway API"
                gateways[api_name] = await stack.enter_async_context(
                    process(gateway_args(api_args, profile), env,
                            f"http://127.0.0.1:{port}/healthz", api_name)
                )  # fmt: skip
                if not together:
                    gateways["gateway links"] = await stack.enter_async_context(
                        process(gateway_args(["--no-api", "--no-worker", "--no-migrate"], None),
                                env, None, "gateway links")
                    )  # fmt: skip
                gateways["gateway worker"] = await stack.enter_async_context(
                    process(gateway_args(["--no-api", "--no-links", "--no-migrate"], None), env,
                            None, "gateway worker")
                )  # fmt: skip
            else:
                gateways["gateway"] = await stack.enter_async_context(
                    process(gateway_args([], profile), env, f"http://127.0.0.1:{port}/healthz",
                            "gateway")
                )  # fmt: skip
            await _wait_bound(sim_http)
            ours = psutil.Process()
            pg_before = postgres_cpu(database_name(url))
            marks = {name: cpu_seconds(proc) for name, proc in gateways.items()}
            marks["simulator"] = cpu_seconds(simulator)
            marks["bench (DLR script)"] = cpu_seconds(ours)
            before_wrk = waited_children_cpu()
            started = time.perf_counter()
            run = await wrk(binary, send_path(port), script, args)
            accepted_at = time.perf_counter()
            wrk_cpu = waited_children_cpu() - before_wrk
            accepted = sum((await count_mts(url)).values())
            last_progress, seen = time.perf_counter(), -1
            while len(receiver.finals) < accepted:
                if len(receiver.finals) != seen:
                    seen, last_progress = len(receiver.finals), time.perf_counter()
                if time.perf_counter() - last_progress > 20 or (
                    time.perf_counter() - accepted_at > args.drain
                ):
                    break
                await asyncio.sleep(0.2)
            finished = receiver.last_at or time.perf_counter()
            cpu = {name: cpu_seconds(proc) - marks[name] for name, proc in gateways.items()}
            cpu |= {
                "simulator": cpu_seconds(simulator) - marks["simulator"],
                "bench (DLR script)": cpu_seconds(ours) - marks["bench (DLR script)"],
                "postgres": postgres_cpu_since(database_name(url), pg_before)
                if backend == "postgres"
                else 0.0,
                "wrk": wrk_cpu,
            }
            async with httpx2.AsyncClient() as client:
                stats = (await client.get(f"http://127.0.0.1:{sim_http}/sim/stats")).json()
    finally:
        await receiver.stop()
    mts = await count_mts(url)
    events = await count_events(url)
    done = len(receiver.finals)
    wall = finished - started
    rate = done / wall if wall > 0 else 0.0
    layout = {
        1: "one gateway process",
        2: "API+links and worker in 2 processes",
        3: "API, links and worker in 3 processes",
    }[args.processes]
    print(
        f"\n== end to end, {backend} ({args.duration} s of requests, window {args.window}, "
        f"{layout}) =="
    )
    print(
        f"accepted        {run.requests:,} requests in {run.seconds:.1f} s = {run.rps:,.0f} "
        f"msg/s (p50 {run.p50_us / 1000:.1f} ms, p99 {run.p99_us / 1000:.1f} ms, "
        f"errors {run.errors}, non-2xx {run.non2xx}, not MSG_OK {run.not_ok})"
    )
    print(f"at the SMSC     {stats['submits']:,} submit_sm, {stats['dlrs_sent']:,} receipts sent")
    print(
        f"DLR callbacks   {receiver.callbacks:,} received, {done:,} messages final "
        f"(of {accepted:,} accepted)"
    )
    print(f"end to end      {done:,} messages in {wall:.1f} s = {rate:,.0f} msg/s")
    print(f"MT states       {mts}")
    print(f"webhook events  {events}")
    if rate < args.target or args.profile:
        print(f"where the time goes (CPU seconds over {wall:.1f} s of wall time, 2 = both cores):")
        if args.processes > 1:
            cpu[f"gateway ({args.processes} processes)"] = sum(
                v for k, v in cpu.items() if k in gateways
            )
        for name, seconds in sorted(cpu.items(), key=lambda kv: -kv[1]):
            if seconds:
                print(
                    f"  {name:20s} {seconds:7.1f} s  {100 * seconds / wall:4.0f}% of a core  "
                    f"{1e6 * seconds / max(done, 1):6.0f} us/message"
                )
    if profile is not None and profile.exists():
        print("gateway profile (top 25 by own time):")
        pstats.Stats(str(profile)).sort_stats("tottime").print_stats(25)


async def _wait_bound(sim_http: int) -> None:
    """Until the gateway's link has bound to the simulator (bounded: 30 s)."""
    deadline = time.monotonic() + 30
    async with httpx2.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            stats = (await client.get(f"http://127.0.0.1:{sim_http}/sim/stats")).json()
            if stats.get("binds", 0) > 0:
                return
            await asyncio.sleep(0.1)
    raise RuntimeError("the gateway's link did not bind to the simulator in 30 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backends", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"]
    )
    parser.add_argument("--parts", nargs="+", default=["accept", "e2e"], choices=["accept", "e2e"])
    parser.add_argument("--duration", type=int, default=60, help="seconds of requests")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--window", type=int, default=100, help="the link's SMPP window")
    parser.add_argument("--drain", type=int, default=300, help="seconds to wait for callbacks")
    parser.add_argument("--target", type=float, default=1000.0, help="end-to-end msg/s")
    parser.add_argument(
        "--processes",
        type=int,
        choices=[1, 2, 3],
        default=1,
        help="e2e: the gateway as 1 process, 2 (API+links, worker) or 3 (API, links, worker)",
    )
    parser.add_argument("--profile", action="store_true", help="run the gateway under cProfile")
    parser.add_argument("--profile-dir", help="keep the cProfile output (.prof) in this directory")
    args = parser.parse_args()
    binary = require_wrk()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        script = workdir / "send.lua"
        script.write_text(WRK_SCRIPT)
        for backend in args.backends:
            if "accept" in args.parts:
                with database(backend, workdir, "accept") as url:
                    asyncio.run(bench_accept(backend, url, binary, script, args))
            if "e2e" in args.parts:
                with database(backend, workdir, "e2e") as url:
                    asyncio.run(bench_e2e(backend, url, binary, script, args, workdir))


if __name__ == "__main__":
    main()
