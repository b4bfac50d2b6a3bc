"""When a batch of receipts starts: when the SMSC cannot send more, or after a short gather.

Receipts are answered only after their batch commits (receiver.py), and an SMSC keeps at most
its window of deliver_sm unanswered (1 to a few hundred). A fixed wait before every batch
therefore capped a link at one window per wait: an SMSC with a window of 1, which sends the
next deliver_sm only after our response, got under 100 receipts a second through a 10 ms wait.

So the batch starts at once when every session with receipts waiting has as many deliver_sm
unanswered as it ever had (its SMSC's window as far as it has shown it, or as many as our
session reads at once): nothing more can come before we answer. That is looked at every
:data:`POLL_SECONDS` while the batch gathers. Otherwise the batch starts at ``enough``
receipts or after :data:`GATHER_SECONDS`: a trickle from an SMSC whose window has room waits
for company, because a transaction per receipt costs several times a receipt's share of a
batch (about 1 ms of CPU against 0.1 ms on SQLite) and competes with the MOs' transactions.
Starting on a 1 ms pause instead made one transaction per receipt of a 300/s trickle and
raised the MO-to-reply latency (bench/mo_reply.py, p50 and p99 both; docs/benchmarks.md),
with no gain for windows of 1 to 100, which fill.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

GATHER_SECONDS: Final = 0.01
POLL_SECONDS: Final = 0.001


class Queued(Protocol):
    @property
    def session(self) -> object:
        """The SMPP session it came on."""
        ...


@dataclass(slots=True)
class _Window:
    unanswered: int = 0
    most: int = 0


class DeliverWindows:
    """deliver_sm (receipts and MOs) of each session handed to the receiver and not yet
    answered: now, and at most so far. A session is forgotten with it."""

    def __init__(self) -> None:
        self._windows: weakref.WeakKeyDictionary[object, _Window] = weakref.WeakKeyDictionary()
        self.started_on_full_window = 0  # batches started at once: nothing more could come

    def arrived(self, session: object) -> None:
        window = self._windows.setdefault(session, _Window())
        window.unanswered += 1
        window.most = max(window.most, window.unanswered)

    def answered(self, session: object) -> None:
        self._windows[session].unanswered -= 1

    def full(self, queue: Sequence[Queued]) -> bool:
        """Whether every session with something in ``queue`` has as many unanswered as it
        ever had."""
        for session in {item.session for item in queue}:
            window = self._windows.get(session)
            if window is None or window.unanswered < window.most:
                return False
        return True

    async def gather(self, queue: Sequence[Queued], enough: int) -> None:
        """Return when the receipts in ``queue`` (which grows meanwhile) should be stored."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + GATHER_SECONDS
        while len(queue) < enough:
            if self.full(queue):
                self.started_on_full_window += 1
                return
            rest = deadline - loop.time()
            if rest <= 0:
                return
            await asyncio.sleep(min(POLL_SECONDS, rest))
