"""What a running gateway holds: settings, database, clock. Built once by ``app.py``."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from smsgate.config import Settings
from smsgate.domain.clock import Clock, SystemClock


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    clock: Clock = field(default_factory=SystemClock)
