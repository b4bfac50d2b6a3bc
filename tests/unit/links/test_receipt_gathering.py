"""When a batch of receipts starts (links/receipt_gathering.py), on the event loop's clock."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from smsgate.links import receipt_gathering
from smsgate.links.receipt_gathering import GATHER_SECONDS, POLL_SECONDS, DeliverWindows


class Session:
    """Stands for an SMPP session: only its identity matters here."""


@dataclass
class Queued:
    session: object


async def _timed(windows: DeliverWindows, queue: list[Queued], enough: int = 125) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    await windows.gather(queue, enough)
    return loop.time() - start


async def test_a_full_window_starts_the_batch_at_once() -> None:
    windows, session = DeliverWindows(), Session()
    windows.arrived(session)
    assert windows.full([Queued(session)])
    assert await _timed(windows, [Queued(session)]) < POLL_SECONDS / 2


async def test_a_trickle_waits_for_company_when_the_window_has_room() -> None:
    windows, session = DeliverWindows(), Session()
    for _ in range(3):
        windows.arrived(session)
    windows.answered(session)  # the SMSC showed a window of 3; 2 unanswered now
    queue = [Queued(session), Queued(session)]
    assert not windows.full(queue)
    assert GATHER_SECONDS <= await _timed(windows, queue) < 5 * GATHER_SECONDS
    assert windows.started_on_full_window == 0


async def test_a_window_that_fills_meanwhile_starts_the_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A long gather, so that a start at its end cannot pass for a start when the window filled.
    monkeypatch.setattr(receipt_gathering, "GATHER_SECONDS", 1.0)
    windows, session = DeliverWindows(), Session()
    for _ in range(3):
        windows.arrived(session)
    windows.answered(session)  # a window of 3 with room for one more
    queue = [Queued(session), Queued(session)]

    async def the_last_one() -> None:
        await asyncio.sleep(0.01)
        windows.arrived(session)
        queue.append(Queued(session))

    arriving = asyncio.create_task(the_last_one())
    elapsed = await _timed(windows, queue)
    await arriving
    assert 0.01 <= elapsed < 0.5
    assert windows.started_on_full_window == 1


async def test_a_stream_gathers_until_the_cap() -> None:
    windows, session = DeliverWindows(), Session()
    for _ in range(1000):
        windows.arrived(session)
    windows.answered(session)
    queue = [Queued(session)]

    async def stream() -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS / 4)
            queue.append(Queued(session))

    feeder = asyncio.create_task(stream())
    try:
        elapsed = await _timed(windows, queue, enough=10_000)
    finally:
        feeder.cancel()
    assert GATHER_SECONDS <= elapsed < 5 * GATHER_SECONDS
    assert len(queue) > 5


async def test_enough_receipts_start_the_batch_at_once() -> None:
    windows, session = DeliverWindows(), Session()
    for _ in range(10):
        windows.arrived(session)
    windows.answered(session)
    assert await _timed(windows, [Queued(session)] * 5, enough=5) < POLL_SECONDS / 2


async def test_every_session_must_be_full() -> None:
    windows, full, room = DeliverWindows(), Session(), Session()
    windows.arrived(full)
    windows.arrived(room)
    windows.arrived(room)
    windows.answered(room)
    assert windows.full([Queued(full)])
    assert not windows.full([Queued(full), Queued(room)])
    assert not windows.full([Queued(Session())])  # never seen
