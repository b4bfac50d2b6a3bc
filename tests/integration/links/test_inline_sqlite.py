"""The link's transactions on the event loop on SQLite (``links/inline_sqlite.py``): they never
wait for SQLite's write lock, and a receipt or an outcome that could not be written there is
written the ordinary way once the lock is free."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError
from tests.factories import add_merchant, add_service
from tests.integration.links.link_env import (
    eventually,
    mt_status,
    provision,
    send,
    settings_for,
    start_link,
)

from smsgate.links.inline_sqlite import inline_engine
from smsgate.runtime import Runtime
from smsgate.services.access_codes import make_mo_handler
from smsgate.simulator import Simulator
from smsgate.store.db import make_sessionmaker
from smsgate.store.models import DeliveryReport, ShortNumber


@pytest.fixture
def sqlite_path(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    from tests.conftest import fresh_database_url

    return Path(
        fresh_database_url("sqlite", request, tmp_path).removeprefix("sqlite+aiosqlite:///")
    )


class _Holder:
    """Another connection holding SQLite's write lock for a while, on a thread."""

    def __init__(self, path: Path, seconds: float) -> None:
        self.taken = threading.Event()
        self._thread = threading.Thread(target=self._hold, args=(path, seconds))

    def _hold(self, path: Path, seconds: float) -> None:
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        self.taken.set()
        time.sleep(seconds)
        db.execute("COMMIT")
        db.close()

    def __enter__(self) -> _Holder:
        self._thread.start()
        self.taken.wait()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join()


async def test_a_transaction_on_the_loop_never_waits_for_the_write_lock(sqlite_path: Path) -> None:
    engine = inline_engine(str(sqlite_path))
    sessions = make_sessionmaker(engine)
    try:
        with _Holder(sqlite_path, 0.5):
            started = time.monotonic()
            with pytest.raises(OperationalError, match="locked"):
                async with sessions() as session, session.begin():
                    await session.execute(text("SELECT 1"))
            assert time.monotonic() - started < 0.2
        async with sessions() as session, session.begin():
            count = await session.scalar(select(func.count()).select_from(DeliveryReport))
        assert count == 0
    finally:
        await engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_receipts_and_outcomes_wait_for_a_write_lock_taken_elsewhere(
    runtime: Runtime, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = Path(runtime.settings.database_url.removeprefix("sqlite+aiosqlite:///"))
    await provision(runtime.sessions, simulator.smpp_port)
    async with runtime.sessions() as session, session.begin():
        number = (await session.execute(select(ShortNumber))).scalar_one()
        await add_merchant(session)
        await add_service(session, 102, keyword="KOD", short_numbers=[number])
    runtime.mo_handlers["access_code"] = make_mo_handler()
    link = await start_link(runtime, settings_for(simulator.smpp_port))
    try:
        receiver = link.link.receiver
        assert receiver.direct is not None
        # A batch whose attempt on the loop finds the lock taken is stored again whole, the
        # ordinary way; one savepoint per PDU is only for a batch that failed otherwise.
        stores: list[tuple[bool, bool]] = []
        store = receiver._store

        async def spy(batch: Any, *, isolate: bool, on_loop: bool = True) -> Any:
            stores.append((isolate, on_loop))
            return await store(batch, isolate=isolate, on_loop=on_loop)

        monkeypatch.setattr(receiver, "_store", spy)
        mt_id = await send(runtime, "hello")
        # An MO, its reply's outcome and receipts, and the MT's, while another connection
        # holds the lock: they wait for it (on the store's thread, or the ordinary way).
        with _Holder(path, 0.6):
            await simulator.inject_mo("359888000001", "1851", "KOD", wait=False)
            await asyncio.sleep(0.3)
        await eventually(lambda: _answered(simulator, "359888000001"))
        await eventually(lambda: mt_status(runtime, mt_id, "delivered"), timeout=10)
        async with runtime.sessions() as session:
            reports = await session.scalar(select(func.count()).select_from(DeliveryReport))
        await eventually(lambda: _reports(runtime, 2))
        assert reports is not None
        # Whether a receipt batch meets the held lock depends on timing (about one run in
        # three here); when one does, it is stored again whole, never PDU by PDU.
        assert stores and all(not isolate for isolate, _ in stores)
    finally:
        await link.stop()


async def _answered(simulator: Simulator, phone: str) -> bool:
    return bool(simulator.inbox(phone))


async def _reports(runtime: Runtime, wanted: int) -> bool:
    async with runtime.sessions() as session:
        found = await session.scalar(select(func.count()).select_from(DeliveryReport))
    return (found or 0) >= wanted
