"""The link's write lock: the holder may take it again; other tasks wait their turn."""

from __future__ import annotations

import asyncio

from smsgate.links.write_lock import TaskLock


async def test_the_holder_takes_it_again_and_others_wait() -> None:
    lock = TaskLock()
    order: list[str] = []

    async def other() -> None:
        async with lock:
            order.append("other")

    async with lock:
        waiting = asyncio.create_task(other())
        async with lock:
            order.append("again")
        await asyncio.sleep(0.01)
        assert lock.locked() and order == ["again"]
    await asyncio.wait_for(waiting, 1)
    assert order == ["again", "other"] and not lock.locked()


async def test_a_cancelled_waiter_leaves_it_usable() -> None:
    lock = TaskLock()
    async with lock:
        waiter = asyncio.create_task(lock.acquire())
        await asyncio.sleep(0)
        waiter.cancel()
    async with asyncio.timeout(1), lock:
        assert lock.locked()
    assert not lock.locked()
