"""Stopping the gateway: every part is asked to stop; one that does not is named, with where
it waits, and given up on, so the process still ends."""

from __future__ import annotations

import asyncio
import logging

import pytest

from smsgate import app as app_module
from smsgate.app import Component, run_components


class Obedient:
    def __init__(self) -> None:
        self.stopping = asyncio.Event()
        self.stopped = False

    async def run(self) -> None:
        await self.stopping.wait()
        self.stopped = True

    def stop(self) -> None:
        self.stopping.set()


async def hang_inside_a_helper(never: asyncio.Event) -> None:
    await never.wait()


async def test_a_part_that_does_not_stop_is_named_and_cancelled(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(app_module, "STOP_GRACE_SECONDS", 0.2)
    obedient = Obedient()
    never = asyncio.Event()
    cancelled = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.create_task(hang_inside_a_helper(never))
        finally:
            cancelled.set()

    async def ends_at_once() -> None:
        return None

    components = [
        Component("obedient", obedient.run, obedient.stop),
        Component("stubborn", stubborn, lambda: None),
        Component("short-lived", ends_at_once, lambda: None),  # its end starts the shutdown
    ]
    with caplog.at_level(logging.ERROR, logger="smsgate"):
        await asyncio.wait_for(run_components(components), 5)
    assert obedient.stopped
    assert cancelled.is_set()
    [record] = [r for r in caplog.records if "did not stop" in r.getMessage()]
    message = record.getMessage()
    assert message.startswith("stubborn did not stop within 0.2 s")
    # The chain of awaits is followed into the task it waits for, down to the event.
    assert "in stubborn" in message
    assert "in hang_inside_a_helper" in message
    assert "awaiting <Future pending" in message
