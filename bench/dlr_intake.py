"""Delivery-receipt intake in-process: receipts/s and CPU per receipt of ``services/dlr``.

No SMPP and no HTTP: the receipts go straight into the service, in transactions of
``--batch`` receipts as the link's receiver hands them over, against ``--messages`` submitted
one-part MTs of a service with a DLR URL (every receipt is a DELIVRD that queues a callback).
``--mode single`` calls ``receive_receipt`` once per receipt, ``--mode set`` calls
``receive_receipts`` once per batch; ``--mode notify`` times the other half of a message's
callbacks instead, ``notify_submit_outcomes`` (``accepted``) once per batch of MTs, as the
link's writer calls it.

``--mode link`` takes the receipts through the real path instead: an operator link in a child
process, bound over loopback SMPP to the simulator in this one, submits ``--messages`` MTs;
the simulator holds their receipts until every outcome is written, then sends them all with
at most ``--windows`` deliver_sm unanswered (an SMSC's window; 1: the next only after our
response). It reports receipts/s from the first receipt to the last, receipts per
transaction, the time from each deliver_sm to its response (the simulator's clock), and the
CPU per receipt of the link's process (and of PostgreSQL's backends). ``--gateway-src`` runs
the link from another checkout's ``src`` (the simulator stays this one). ``--trickle R``
submits R MTs a second instead and times the receipts as they come, each right after its
submit_sm_resp: a steady stream rather than a burst.

    python bench/dlr_intake.py                                # SQLite and PostgreSQL, both modes
    python bench/dlr_intake.py --backends sqlite --mode set --messages 20000
    python bench/dlr_intake.py --mode link --windows 1,1000 --messages 3000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _support import database_name, load_average, pg_admin, postgres_cpu, postgres_url
from sqlalchemy import insert, select

from smsgate.services import dlr
from smsgate.store.db import make_engine, make_sessionmaker
from smsgate.store.migrate import upgrade
from smsgate.store.models import Merchant, MtMessage, MtPart, Operator, Service

OPERATOR = "bench-op"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
BUSY = False


async def prepare(url: str, messages: int, *, port: int = 1, status: str = "submitted") -> None:
    """The operator (its SMSC on ``port``), a service with a DLR URL and ``messages`` one-part
    MTs in ``status`` (``submitted`` ones with their part, as the link would have left them)."""
    await upgrade(url)
    engine = make_engine(url)
    try:
        async with engine.begin() as connection:
            stamp: dict[str, Any] = {"created_at": T0, "updated_at": T0}
            await connection.execute(
                insert(Operator).values(
                    id=OPERATOR, country="BG", kind="smpp", host="127.0.0.1", port=port,
                    system_id="b", password="b", tps=1000, window=10, settings={},
                    intake_secret_hash="", ip_allowlist=[], **stamp,
                )
            )  # fmt: skip
            await connection.execute(
                insert(Merchant).values(
                    id=1, login="shop", password_hash="x", currency="BGN", credit_minor=0,
                    balance_minor=0, **stamp,
                )
            )  # fmt: skip
            await connection.execute(
                insert(Service).values(
                    id=201, merchant_id=1, type="bulk", keyword="", status="active",
                    ip_allowlist=[], settings={"dlr_url": "http://127.0.0.1:9/dlr"},
                    callback_urls={}, callback_method="POST", signing_secret="s", **stamp,
                )
            )  # fmt: skip
            for start in range(0, messages, 1000):
                ids = range(start + 1, min(messages, start + 1000) + 1)
                await connection.execute(
                    insert(MtMessage),
                    [
                        {
                            "id": mt_id, "merchant_id": 1, "service_id": 201,
                            "operator_id": OPERATOR, "msisdn": "359881234567", "sender": "SHOP",
                            "text": "hello", "encoding": "gsm7", "parts": 1,
                            "status": status, "next_attempt_at": T0, **stamp,
                        }
                        for mt_id in ids
                    ],
                )  # fmt: skip
                if status != "submitted":
                    continue
                await connection.execute(
                    insert(MtPart),
                    [
                        {
                            "mt_id": mt_id, "part_no": 1, "operator_id": OPERATOR,
                            "operator_message_id": f"m{mt_id}", "status": "submitted",
                            "error_code": "", "submitted_at": T0,
                        }
                        for mt_id in ids
                    ],
                )  # fmt: skip
    finally:
        await engine.dispose()


async def run(url: str, messages: int, batch: int, mode: str) -> tuple[float, float]:
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    receipts = [
        dlr.IncomingReceipt(OPERATOR, f"m{n}", "delivered", "", {"via": "smpp", "id": f"m{n}"})
        for n in range(1, messages + 1)
    ]
    busy = asyncio.get_running_loop().create_task(keep_busy()) if BUSY else None
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        for start in range(0, messages, batch):
            chunk = receipts[start : start + batch]
            async with sessions() as session, session.begin():
                now = datetime.now(UTC)
                if mode == "notify":
                    mt_ids = list(range(start + 1, start + len(chunk) + 1))
                    await dlr.notify_submit_outcomes(session, mt_ids, now=now)
                elif mode == "set":
                    await dlr.receive_receipts(session, chunk, now=now)
                else:
                    for receipt in chunk:
                        await dlr.receive_receipt(session, receipt, now=now)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        async with sessions() as session:
            statuses = (await session.execute(select(MtMessage.status).distinct())).scalars()
            wanted = ["submitted"] if mode == "notify" else ["delivered"]
            assert list(statuses) == wanted, f"every message should be {wanted[0]}"
    finally:
        if busy is not None:
            busy.cancel()
        await engine.dispose()
    return wall, cpu


async def keep_busy() -> None:
    """Keep the event loop's thread on the CPU, as a gateway under load does: a statement
    that hands the GIL back and forth with it (aiosqlite's thread) then waits for it."""
    while True:
        until = time.perf_counter() + 0.002
        while time.perf_counter() < until:
            pass
        await asyncio.sleep(0)


async def bench(backend: str, mode: str, args: argparse.Namespace) -> None:
    if backend == "sqlite":
        workdir = Path(tempfile.mkdtemp(prefix="dlr-intake-"))
        url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    else:
        name = f"smsgate_dlrbench_{uuid.uuid4().hex[:8]}"
        await pg_admin(f'CREATE DATABASE "{name}"')
        url = postgres_url(name)
    try:
        await prepare(url, args.messages)
        wall, cpu = await run(url, args.messages, args.batch, mode)
    finally:
        if backend == "postgresql":
            await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(
        f"{backend:10s} {mode:6s} {args.messages:,} receipts in batches of {args.batch}: "
        f"{args.messages / wall:8,.0f} per s, {1e6 * cpu / args.messages:6,.0f} us CPU "
        f"per receipt or MT (this process; {load_average()})"
    )


# --- through the link (--mode link) -----------------------------------------------------------

LINK_TIMEOUT = 600.0  # seconds: the bound of every phase of a link run


async def link_bench(backend: str, window: int, args: argparse.Namespace) -> None:
    from smsgate.simulator import Simulator, SimulatorOptions, config_from_mapping

    url, cleanup = await scratch_database(backend)
    options = SimulatorOptions(window=window, inbox_limit=0)
    operator = {
        "id": OPERATOR, "country": "BG", "kind": "smpp", "host": "127.0.0.1", "port": 1,
        "system_id": "b", "password": "b",
    }  # fmt: skip
    sim = Simulator(config_from_mapping({"operators": [operator]}, options=options))
    port = await sim.start("127.0.0.1", 0)
    dispatcher = sim.smsc.dispatcher
    if not args.trickle:
        await dispatcher.stop()  # receipts wait until the link has written every outcome
    env = dict(os.environ)
    if args.gateway_src:
        env["PYTHONPATH"] = args.gateway_src
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--link-child", url, str(port), str(args.messages),
        str(args.trickle), env=env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert child.stdout is not None
    try:
        async with asyncio.timeout(LINK_TIMEOUT):
            line = await child.stdout.readline()
            assert line.strip() == b"submitted", line
            dispatcher.start()
            result = json.loads(await child.stdout.readline())
            assert await child.wait() == 0
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
        await sim.stop()
        await cleanup()
    latencies = sorted(dispatcher.latencies)
    assert len(latencies) == args.messages, "every receipt acknowledged once"
    p50, p99 = (1000 * latencies[int(q * (len(latencies) - 1))] for q in (0.5, 0.99))
    n, seconds = args.messages, result["seconds"]
    database = f", PostgreSQL {1e6 * result['pg_cpu'] / n:,.0f} us" if backend != "sqlite" else ""
    mode = f"trickle {args.trickle}/s" if args.trickle else "link"
    print(
        f"{backend:10s} {mode} window {window:5d}: {n:,} receipts {n / seconds:8,.0f} per s, "
        f"{n / result['batches']:6.1f} per transaction, response p50 {p50:.2f} ms "
        f"p99 {p99:.2f} ms (mean {1000 * statistics.fmean(latencies):.2f}), CPU per receipt "
        f"link {1e6 * result['cpu'] / n:,.0f} us{database} ({load_average()})"
    )


async def scratch_database(backend: str) -> tuple[str, Any]:
    if backend == "sqlite":
        workdir = Path(tempfile.mkdtemp(prefix="dlr-link-"))

        async def nothing() -> None:
            return None

        return f"sqlite+aiosqlite:///{workdir / 'bench.db'}", nothing
    name = f"smsgate_dlrbench_{uuid.uuid4().hex[:8]}"
    await pg_admin(f'CREATE DATABASE "{name}"')

    async def drop() -> None:
        await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return postgres_url(name), drop


async def link_child(url: str, port: int, messages: int, trickle: int) -> None:
    """The link's process: submit every MT, say so, then time the receipts (with ``trickle``,
    submit at that rate and time the receipts as they come)."""
    from smsgate.config import Settings
    from smsgate.links.link import OperatorLink
    from smsgate.links.settings import link_settings
    from smsgate.runtime import Runtime

    await prepare(url, messages, port=port, status="queued")
    engine = make_engine(url)
    runtime = Runtime(
        settings=Settings(database_url=url), engine=engine, sessions=make_sessionmaker(engine)
    )
    settings = link_settings(
        operator_id=OPERATOR, host="127.0.0.1", port=port, system_id="b", password="b",
        tps=trickle or 100_000, window=100, settings={},
    )  # fmt: skip
    link = OperatorLink(settings, runtime)
    state, receiver = link.state, link.receiver
    task = asyncio.create_task(link.run())
    pg = database_name(url) if url.startswith("postgresql") else None
    try:
        async with asyncio.timeout(LINK_TIMEOUT):
            if not trickle:
                await until(lambda: state.submitted >= messages, 0.01)
                await link.submitter.writer.flush()
            print("submitted", flush=True)
            await until(lambda: state.receipts_received > 0, 0.001)
            start, cpu, batches = time.perf_counter(), time.process_time(), receiver.batches
            pg_before = postgres_cpu(pg) if pg else {}
            await until(lambda: state.receipts_received >= messages, 0.005)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            pg_cpu = sum(postgres_cpu(pg).values()) - sum(pg_before.values()) if pg else 0.0
            batches = receiver.batches - batches + 1  # and the one that brought the first
        async with runtime.sessions() as session:
            statuses = (await session.execute(select(MtMessage.status).distinct())).scalars()
            assert list(statuses) == ["delivered"], "every message should be delivered"
    finally:
        link.stop()
        await task
        await engine.dispose()
    result = {"seconds": seconds, "cpu": cpu, "batches": batches, "pg_cpu": pg_cpu}
    print(json.dumps(result), flush=True)


async def until(done: Callable[[], bool], interval: float) -> None:
    """Return once ``done()``, looking every ``interval`` seconds (the caller bounds it)."""
    while True:
        if done():
            return
        await asyncio.sleep(interval)


def main() -> None:
    if sys.argv[1:2] == ["--link-child"]:
        url, port, messages, trickle = sys.argv[2:6]
        asyncio.run(link_child(url, int(port), int(messages), int(trickle)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--mode", default="single,set", help="single, set, notify or link")
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--busy", action="store_true", help="keep the event loop busy meanwhile")
    parser.add_argument(
        "--windows", default="1,1000", help="link: the SMSC's windows for the receipts"
    )
    parser.add_argument("--gateway-src", help="link: run the link from this src directory")
    parser.add_argument(
        "--trickle", type=int, default=0, help="link: submit this many per s, receipts as they come"
    )
    args = parser.parse_args()
    global BUSY
    BUSY = args.busy
    for backend in args.backends.split(","):
        for mode in args.mode.split(","):
            if mode == "link":
                for window in args.windows.split(","):
                    asyncio.run(link_bench(backend, int(window), args))
                continue
            if mode != "single" and not hasattr(dlr, "receive_receipts"):
                continue
            asyncio.run(bench(backend, mode, args))


if __name__ == "__main__":
    main()
