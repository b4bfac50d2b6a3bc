"""What a running gateway holds: settings, database, clock, and the wiring between its parts.
Built once by ``app.py``."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from smsgate.config import Settings
from smsgate.domain.clock import Clock, SystemClock
from smsgate.services.mo import MoHandler
from smsgate.store.db import make_read_sessionmaker


class Nudge:
    """Wakes a polling loop at once when work was committed in this process.

    Polling still runs as the safety net (work committed by another process, or a nudge lost
    in a crash); the nudge only cuts the latency of the common case.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def wake(self) -> None:
        self._event.set()

    async def wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), seconds)
        self._event.clear()


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    clock: Clock = field(default_factory=SystemClock)
    # Service type -> what an MO routed to such a service does.
    mo_handlers: dict[str, MoHandler] = field(default_factory=dict)
    jobs_nudge: Nudge = field(default_factory=Nudge)
    mt_nudge: Nudge = field(default_factory=Nudge)
    # Sessions that only read (store/db.make_read_sessionmaker), on the same engine.
    read_sessions: async_sessionmaker[AsyncSession] = field(init=False)

    def __post_init__(self) -> None:
        self.read_sessions = make_read_sessionmaker(self.engine)

    def wake_workers(self) -> None:
        self.jobs_nudge.wake()

    def wake_links(self) -> None:
        """New MTs (and jobs) may be waiting: wake the operator links and the worker."""
        self.mt_nudge.wake()
        self.jobs_nudge.wake()
