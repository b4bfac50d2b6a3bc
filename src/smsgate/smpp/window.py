"""Requests sent and not answered yet: sequence numbers, window slots and response timers.

SMPP 3.4 §2.7.5 lets a side keep several requests outstanding ("windowing"); the window
caps how many. A slot is taken before a request is sent and given back when its response
arrives, its timer fires, or the session closes, whichever comes first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from .constants import MAX_SEQUENCE_NUMBER
from .errors import ResponseTimeout
from .pdu import Request


class Pending:
    """One outstanding request and the future its sender waits on."""

    __slots__ = ("future", "request", "timer", "windowed")

    def __init__(
        self,
        future: asyncio.Future[Any],
        request: Request[Any],
        timer: asyncio.TimerHandle,
        windowed: bool,
    ) -> None:
        self.future = future
        self.request = request
        self.timer = timer
        self.windowed = windowed  # holds a window slot (enquire_link and unbind do not)


class RequestWindow:
    def __init__(self, size: int, on_expired: Callable[[Pending], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._slots = asyncio.Semaphore(size)
        self._pending: dict[int, Pending] = {}
        self._next_sequence = 1
        self._on_expired = on_expired
        self.idle = asyncio.Event()
        """Set while nothing is outstanding."""
        self.idle.set()

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def full(self) -> bool:
        """True when a sender would have to wait for a slot."""
        return self._slots.locked()

    async def take_slot(self) -> None:
        await self._slots.acquire()

    def give_slot(self) -> None:
        self._slots.release()

    def add(self, request: Request[Any], timeout: float, *, windowed: bool) -> asyncio.Future[Any]:
        """Number ``request`` and start its timer; the caller then sends it."""
        sequence = self._allocate()
        request.sequence_number = sequence
        future: asyncio.Future[Any] = self._loop.create_future()
        timer = self._loop.call_later(timeout, self._expire, sequence)
        self._pending[sequence] = Pending(future, request, timer, windowed)
        self.idle.clear()
        return future

    def pop(self, sequence: int) -> Pending | None:
        """The request answered by ``sequence`` (None if unknown), its slot given back."""
        pending = self._pending.pop(sequence, None)
        if pending is None:
            return None
        pending.timer.cancel()
        if pending.windowed:
            self._slots.release()
        if not self._pending:
            self.idle.set()
        return pending

    def fail_all(self, make_error: Callable[[], BaseException]) -> None:
        for sequence in list(self._pending):
            pending = self.pop(sequence)
            if pending is not None and not pending.future.done():
                pending.future.set_exception(make_error())

    def _allocate(self) -> int:
        sequence = self._next_sequence
        while True:
            self._next_sequence = 1 if sequence >= MAX_SEQUENCE_NUMBER else sequence + 1
            if sequence not in self._pending:
                return sequence
            sequence = self._next_sequence

    def _expire(self, sequence: int) -> None:
        pending = self.pop(sequence)
        if pending is None:
            return
        self._on_expired(pending)
        if not pending.future.done():
            command_id = pending.request.command_id
            pending.future.set_exception(
                ResponseTimeout(
                    f"no {command_id.name} response in time",
                    sequence_number=sequence,
                    command_id=command_id,
                )
            )
