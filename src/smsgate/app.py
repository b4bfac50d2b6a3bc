"""The composition root: builds the runtime and wires the API, the worker and the links."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import APIRouter
from sqlalchemy.ext.asyncio import AsyncEngine

from smsgate.api.access_codes import app_checker
from smsgate.api.app import create_api
from smsgate.config import Settings
from smsgate.domain.clock import Clock, SystemClock
from smsgate.runtime import Runtime
from smsgate.store.db import make_engine, make_sessionmaker
from smsgate.store.migrate import upgrade

log = logging.getLogger("smsgate")

# How long the parts of a stopping gateway get to finish what they are doing.
STOP_GRACE_SECONDS = 30.0


def build_runtime(
    settings: Settings, clock: Clock | None = None, engine: AsyncEngine | None = None
) -> Runtime:
    engine = engine or make_engine(settings.database_url)
    runtime = Runtime(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        clock=clock or SystemClock(),
    )
    install_service_handlers(runtime)
    return runtime


def install_service_handlers(runtime: Runtime) -> None:
    """Each service type says what an MO routed to it does."""
    from smsgate.services.access_codes import make_mo_handler

    runtime.mo_handlers["access_code"] = make_mo_handler()
    from smsgate.services.optouts import handle_bulk_mo

    runtime.mo_handlers["bulk"] = handle_bulk_mo


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: signals stop every component alike."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Component:
    """A long-running part of the gateway: started as a task, stopped on shutdown."""

    name: str
    run: Callable[[], Coroutine[Any, Any, None]]
    stop: Callable[[], Coroutine[Any, Any, None] | None]


def make_components(
    runtime: Runtime,
    *,
    api: bool = True,
    worker: bool = True,
    links: bool = True,
    routers: Sequence[APIRouter] = (),
) -> list[Component]:
    """The parts to run; ``routers`` are mounted beside the API's own (the demo's extras)."""
    components: list[Component] = []
    if worker:
        from smsgate.worker.runner import Worker, default_handlers

        job_worker = Worker(runtime, default_handlers(runtime))
        components.append(Component("worker", job_worker.run, job_worker.stop))
    if api:
        http_app = create_api(runtime)
        for router in routers:
            http_app.include_router(router)
        config = uvicorn.Config(
            http_app,
            host=runtime.settings.http_host,
            port=runtime.settings.http_port,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
        server = _QuietServer(config)

        def _stop_api() -> None:
            server.should_exit = True

        async def _run_api() -> None:
            try:
                # The code checks' connections open now, not on the first check.
                await app_checker(http_app).start()
                await server.serve()
            finally:
                # The code checker holds a thread (SQLite) or a pool (PostgreSQL) of its own.
                checker = getattr(http_app.state, "code_checker", None)
                if checker is not None:
                    await checker.aclose()

        components.append(Component("api", _run_api, _stop_api))
    if links:
        from smsgate.links.manager import LinkManager

        link_manager = LinkManager(runtime)
        components.append(Component("links", link_manager.run, link_manager.stop))
    return components


async def run_components(components: list[Component]) -> None:
    """Run until SIGINT/SIGTERM or until one component ends, then stop the rest."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stopping.set)
    tasks: dict[asyncio.Task[None], Component] = {
        asyncio.create_task(c.run(), name=c.name): c for c in components
    }
    waiter = asyncio.create_task(stopping.wait())
    done, _ = await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        if task is not waiter and task.exception() is not None:
            log.error("%s stopped with an error", task.get_name(), exc_info=task.exception())
    for component in components:
        result = component.stop()
        if result is not None:
            await result
    _, stuck = await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS)
    waiter.cancel()
    if stuck:
        # Say where each part hangs before giving up on it: a shutdown that stalls is
        # otherwise seen only as a process the supervisor has to kill.
        for task in stuck:
            log.error(
                "%s did not stop within %s s; cancelling it, it waits at:\n%s",
                task.get_name(),
                STOP_GRACE_SECONDS,
                _where(task),
            )
            task.cancel()
        await asyncio.wait(stuck, timeout=5)


def _where(task: asyncio.Task[None]) -> str:
    """Where ``task`` is suspended, outermost first: the chain of coroutines it awaits, then
    what it waits for, into another task's chain when that is a task."""
    lines: list[str] = []
    current: asyncio.Future[Any] | None = task
    for _ in range(50):  # tasks awaiting tasks: a short chain; this only bounds a surprise
        if not isinstance(current, asyncio.Task):
            if current is not None:
                lines.append(f"  awaiting {current!r:.200}\n")
            break
        awaited: Any = current.get_coro()
        while frame := getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None):
            code = frame.f_code
            lines.append(f'  File "{code.co_filename}", line {frame.f_lineno}, in {code.co_name}\n')
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
        # What the innermost await waits for: asyncio keeps it on the task (no public API).
        current = getattr(current, "_fut_waiter", None)
    return "".join(lines) or "  (no frame)\n"


async def serve(
    settings: Settings,
    *,
    api: bool = True,
    worker: bool = True,
    links: bool = True,
    migrate: bool = True,
) -> None:
    if migrate:
        await upgrade(settings.database_url)
    runtime = build_runtime(settings)
    try:
        components = make_components(runtime, api=api, worker=worker, links=links)
        # What start-up built lives as long as the process: kept out of the garbage collector,
        # whose full collections would otherwise scan it all each time, pausing every request
        # for up to ~100 ms (the p99 of check_code.php).
        gc.freeze()
        await run_components(components)
    finally:
        await runtime.engine.dispose()
