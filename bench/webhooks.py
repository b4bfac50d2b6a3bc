"""Webhook delivery throughput of the worker: N queued callbacks, one local keep-alive receiver.

The worker runs in this process (its CPU is this process's CPU time while it delivers); the
merchant's receiver runs in a subprocess (a minimal HTTP/1.1 keep-alive server that answers
200, or 500 for ``--fail-ratio`` of the requests), so its CPU is not counted. The callbacks
are queued before the clock starts (with ``--rate``: meanwhile, by another process, a few per
transaction, as the gateway emits them); the run ends when none is due or running (callbacks the
receiver refused wait for their retry: the run measures every callback's first attempt).

``--client`` measures the HTTP client alone instead: the same signed requests sent through
the worker's connections (``CallbackConnections``), ``--concurrency`` at a time to the one
receiver, no database.

    python bench/webhooks.py                  # 5,000 callbacks, SQLite and PostgreSQL
    python bench/webhooks.py --backends sqlite --callbacks 2000
    python bench/webhooks.py --rate 1000 --callbacks 10000     # queued 10 per commit meanwhile
    python bench/webhooks.py --client --callbacks 5000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil
from _support import (
    database_name,
    free_port,
    load_average,
    pg_admin,
    postgres_cpu,
    postgres_cpu_since,
    postgres_url,
)
from sqlalchemy import and_, func, or_, select

from smsgate.config import Settings
from smsgate.domain.signing import new_signing_secret
from smsgate.runtime import Runtime
from smsgate.services import webhooks
from smsgate.store import jobs
from smsgate.store.db import make_engine, make_sessionmaker
from smsgate.store.migrate import upgrade
from smsgate.store.models import Job, Merchant, Service
from smsgate.worker.runner import Worker
from smsgate.worker.safe_transport import CallbackConnections
from smsgate.worker.webhook_sender import DELIVER_KIND, WebhookSender, build_request

SECRET = new_signing_secret(bytes(range(24)))
FIELDS = {
    "id": "123456",
    "msisdn": "359888123456",
    "status": "delivered",
    "error_code": "",
    "part": "1",
    "parts": "1",
}
DEADLINE_SECONDS = 300.0


# --- the receiver (runs in its own process) --------------------------------------------------


class _Answer(asyncio.Protocol):
    """HTTP/1.1 keep-alive: answers each request with 200 (or 500 for every ``fail_every``th)."""

    served = 0

    def __init__(self, fail_every: int) -> None:
        self._fail_every = fail_every
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            head_end = self._buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            length = 0
            for line in self._buffer[:head_end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            end = head_end + 4 + length
            if len(self._buffer) < end:
                return
            self._buffer = self._buffer[end:]
            _Answer.served += 1
            failing = self._fail_every and _Answer.served % self._fail_every == 0
            status = b"500 Internal Server Error" if failing else b"200 OK"
            assert self._transport is not None
            self._transport.write(b"HTTP/1.1 " + status + b"\r\ncontent-length: 2\r\n\r\nok")


async def _serve(port: int, fail_every: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Answer(fail_every), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


@contextlib.contextmanager
def receiver(fail_ratio: float) -> Iterator[str]:
    port = free_port()
    fail_every = round(1 / fail_ratio) if fail_ratio > 0 else 0
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), "--fail-every", str(fail_every)]
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline or child.poll() is not None:
                raise RuntimeError("the receiver did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/dlr.php"
    finally:
        child.terminate()
        child.wait(timeout=10)


# --- the database -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def database(backend: str, workdir: Path) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{workdir / 'webhooks'}.db"
        return
    name = f"smsgate_bench_webhooks_{os.getpid()}"
    await pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_url(name)
    finally:
        await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def add_merchant(runtime: Runtime) -> None:
    now = datetime.now(UTC)
    async with runtime.sessions.begin() as session:
        session.add(
            Merchant(
                id=1,
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
                id=201, merchant_id=1, type="bulk", signing_secret=SECRET, created_at=now,
                updated_at=now,
            )
        )  # fmt: skip


async def queue_callbacks(
    runtime: Runtime, url: str, count: int, *, per_commit: int = 1000, rate: float = 0.0
) -> None:
    """``count`` callbacks, ``per_commit`` per transaction, at ``rate`` a second (0: at once)."""
    started = time.monotonic()
    for start in range(0, count, per_commit):
        if rate:
            await asyncio.sleep(max(0.0, started + start / rate - time.monotonic()))
        now = datetime.now(UTC)
        async with runtime.sessions.begin() as session:
            for n in range(start, min(count, start + per_commit)):
                await webhooks.emit(
                    session,
                    merchant_id=1,
                    service_id=201,
                    event_type="message.dlr",
                    url=url,
                    payload={**FIELDS, "id": str(n)},
                    now=now,
                )


async def _produce(args: argparse.Namespace) -> None:
    engine = make_engine(args.database_url)
    runtime = Runtime(
        settings=Settings(database_url=args.database_url),
        engine=engine,
        sessions=make_sessionmaker(engine),
    )
    try:
        await queue_callbacks(
            runtime, args.url, args.callbacks, per_commit=args.per_commit, rate=args.rate
        )
    finally:
        await engine.dispose()


async def _unfinished(runtime: Runtime) -> int:
    """Deliveries due or under way; failed ones waiting for their retry do not count (the run
    measures the first attempt of every callback)."""
    due = and_(Job.status == jobs.QUEUED, Job.run_at <= datetime.now(UTC))
    async with runtime.sessions() as session:
        statement = select(func.count()).where(or_(Job.status == jobs.RUNNING, due))
        return int((await session.execute(statement)).scalar_one())


@dataclass
class Figures:
    label: str
    callbacks: int
    seconds: float
    cpu_seconds: float
    system_seconds: float  # the part of cpu_seconds spent in the kernel (sockets, mostly)
    server_seconds: float | None = None  # PostgreSQL: its backends serving this database

    def line(self) -> str:
        rate = self.callbacks / self.seconds
        per = self.cpu_seconds / self.callbacks * 1000
        kernel = self.system_seconds / self.callbacks * 1000
        server = ""
        if self.server_seconds is not None:
            server = f", PostgreSQL {self.server_seconds / self.callbacks * 1000:.3f} ms"
        return (
            f"{self.label:<28} {self.callbacks:>6} callbacks in {self.seconds:6.2f} s: "
            f"{rate:7.0f}/s, worker CPU {per:.3f} ms per callback ({kernel:.3f} in the kernel; "
            f"{self.cpu_seconds / self.seconds * 100:.0f}% of a core){server}"
        )


def _system_seconds() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


async def bench_worker(backend: str, args: argparse.Namespace) -> Figures:
    with tempfile.TemporaryDirectory() as workdir, receiver(args.fail_ratio) as url:
        async with database(backend, Path(workdir)) as db_url:
            await upgrade(db_url)
            engine = make_engine(db_url)
            runtime = Runtime(
                settings=Settings(database_url=db_url, webhook_allow_private=True),
                engine=engine,
                sessions=make_sessionmaker(engine),
            )
            try:
                await add_merchant(runtime)
                producer: asyncio.subprocess.Process | None = None
                if args.rate:
                    # Queued while the worker runs, by another process (its CPU is not ours).
                    producer = await asyncio.create_subprocess_exec(
                        sys.executable, __file__, "--produce", "--database-url", db_url,
                        "--url", url, "--callbacks", str(args.callbacks),
                        "--rate", str(args.rate), "--per-commit", str(args.per_commit),
                    )  # fmt: skip
                else:
                    await queue_callbacks(runtime, url, args.callbacks)
                sender = WebhookSender(runtime, per_origin=args.per_host)
                worker = Worker(runtime, {DELIVER_KIND: sender}, batch_size=args.batch_size)
                # PostgreSQL: the backends serving this database (the worker's pool; a
                # ``--rate`` producer's backend has gone by the end, so it does not count).
                on_postgres = runtime.engine.dialect.name == "postgresql"
                server_before = postgres_cpu(database_name(db_url)) if on_postgres else {}
                profiler = cProfile.Profile() if args.profile else None
                if profiler is not None:
                    profiler.enable()
                cpu, wall, kernel = time.process_time(), time.monotonic(), _system_seconds()
                task = asyncio.create_task(worker.run())
                try:
                    async with asyncio.timeout(DEADLINE_SECONDS):
                        while (  # noqa: ASYNC110 (the database is what we wait on)
                            producer is not None and producer.returncode is None
                        ) or await _unfinished(runtime):
                            await asyncio.sleep(0.1)
                finally:
                    worker.stop()
                    await task
                    if producer is not None:
                        if producer.returncode is None:
                            producer.kill()
                        await producer.wait()
                cpu, wall = time.process_time() - cpu, time.monotonic() - wall
                kernel = _system_seconds() - kernel
                if profiler is not None:
                    profiler.disable()
                    profiler.dump_stats(f"{args.profile}.{backend}")
                server = (
                    postgres_cpu_since(database_name(db_url), server_before) if on_postgres else 0.0
                )
            finally:
                await engine.dispose()
    label = f"worker {backend}" + (f" ({args.fail_ratio:.0%} fail)" if args.fail_ratio else "")
    if args.rate:
        label += f" @{args.rate:g}/s x{args.per_commit}"
    server_seconds = server if on_postgres else None
    return Figures(label, args.callbacks, wall, cpu, kernel, server_seconds)


async def bench_client(args: argparse.Namespace) -> Figures:
    now = datetime.now(UTC)
    with receiver(0.0) as url:
        deliveries = [
            webhooks.Delivery(
                event_id=webhooks.new_event_id(),
                event_type="message.dlr",
                merchant_id=1,
                service_id=201,
                url=url,
                method="POST",
                fields={**FIELDS, "id": str(n)},
                status=webhooks.PENDING,
                signing_secret=SECRET,
                created_at=now,
            )
            for n in range(args.callbacks)
        ]
        connections = CallbackConnections(allow_private=True, per_origin=args.concurrency)

        async def send(delivery: webhooks.Delivery) -> None:
            request = build_request(delivery, now)
            answer = await connections.send(
                request.origin, request.method_bytes, request.target, request.wire_headers(),
                request.content, timeout_seconds=10.0, limit=65536,
            )  # fmt: skip
            assert answer.status == 200

        try:
            await send(deliveries[0])  # the connection is opened outside the measurement
            cpu, wall, kernel = time.process_time(), time.monotonic(), _system_seconds()
            await asyncio.gather(*(send(d) for d in deliveries))
            cpu, wall = time.process_time() - cpu, time.monotonic() - wall
            kernel = _system_seconds() - kernel
        finally:
            await connections.aclose()
    return Figures(f"client only (x{args.concurrency})", args.callbacks, wall, cpu, kernel)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--callbacks", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16, help="--client: requests at a time")
    parser.add_argument("--per-host", type=int, default=16, help="connections to the receiver")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--fail-ratio", type=float, default=0.0)
    parser.add_argument("--client", action="store_true", help="the HTTP client alone")
    parser.add_argument(
        "--rate", type=float, default=0.0, help="queue while the worker runs, this many a second"
    )
    parser.add_argument("--per-commit", type=int, default=10, help="with --rate: per transaction")
    parser.add_argument(
        "--profile", metavar="PATH", help="cProfile the worker's run into PATH.<backend>"
    )
    parser.add_argument("--produce", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--fail-every", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve, args.fail_every))
        return
    if args.produce:
        asyncio.run(_produce(args))
        return
    print(f"{load_average()}, {psutil.cpu_count()} CPUs")
    if args.client:
        print(asyncio.run(bench_client(args)).line())
        return
    for backend in args.backends.split(","):
        print(asyncio.run(bench_worker(backend, args)).line(), flush=True)


if __name__ == "__main__":
    main()
