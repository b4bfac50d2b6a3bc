"""The composition root: builds the runtime and wires the API, the worker and the links."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from smsgate.config import Settings
from smsgate.domain.clock import Clock, SystemClock
from smsgate.runtime import Runtime
from smsgate.store.db import make_engine, make_sessionmaker


def build_runtime(
    settings: Settings, clock: Clock | None = None, engine: AsyncEngine | None = None
) -> Runtime:
    engine = engine or make_engine(settings.database_url)
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        clock=clock or SystemClock(),
    )
