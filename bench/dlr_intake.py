"""Delivery-receipt intake in-process: receipts/s and CPU per receipt of ``services/dlr``.

No SMPP and no HTTP: the receipts go straight into the service, in transactions of
``--batch`` receipts as the link's receiver hands them over, against ``--messages`` submitted
one-part MTs of a service with a DLR URL (every receipt is a DELIVRD that queues a callback).
``--mode single`` calls ``receive_receipt`` once per receipt, ``--mode set`` calls
``receive_receipts`` once per batch; ``--mode notify`` times the other half of a message's
callbacks instead, ``notify_submit_outcomes`` (``accepted``) once per batch of MTs, as the
link's writer calls it.

    python bench/dlr_intake.py                                # SQLite and PostgreSQL, both modes
    python bench/dlr_intake.py --backends sqlite --mode set --messages 20000
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _support import load_average, pg_admin, postgres_url
from sqlalchemy import insert, select

from smsgate.services import dlr
from smsgate.store.db import make_engine, make_sessionmaker
from smsgate.store.migrate import upgrade
from smsgate.store.models import Merchant, MtMessage, MtPart, Operator, Service

OPERATOR = "bench-op"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
BUSY = False


async def prepare(url: str, messages: int) -> None:
    await upgrade(url)
    engine = make_engine(url)
    try:
        async with engine.begin() as connection:
            stamp: dict[str, Any] = {"created_at": T0, "updated_at": T0}
            await connection.execute(
                insert(Operator).values(
                    id=OPERATOR, country="BG", kind="smpp", host="127.0.0.1", port=1,
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
                            "status": "submitted", "next_attempt_at": T0, **stamp,
                        }
                        for mt_id in ids
                    ],
                )  # fmt: skip
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--mode", default="single,set")
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--busy", action="store_true", help="keep the event loop busy meanwhile")
    args = parser.parse_args()
    global BUSY
    BUSY = args.busy
    for backend in args.backends.split(","):
        for mode in args.mode.split(","):
            if mode != "single" and not hasattr(dlr, "receive_receipts"):
                continue
            asyncio.run(bench(backend, mode, args))


if __name__ == "__main__":
    main()
