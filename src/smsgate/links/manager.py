"""Running the links of every SMPP operator: start, stop, restart on change, fail over.

Every few seconds the manager reads the enabled ``smpp`` operators. For each one it does not
run yet it tries to become the owner (ownership.py) and, if it does, starts the link. A link
whose operator was disabled, removed or changed is stopped (and started again with the new
settings). An operator owned by another process shows as ``standby`` until that process
stops, and is then taken over at the next look.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select

from smsgate.links.link import OperatorLink
from smsgate.links.ownership import Ownership, ownership_for
from smsgate.links.settings import LinkSettings, link_settings
from smsgate.links.state import LinkBoard, LinkState, board_for
from smsgate.runtime import Runtime
from smsgate.store.models import Operator

log = logging.getLogger(__name__)

REFRESH_SECONDS: Final = 5.0
STOP_GRACE_SECONDS: Final = 15.0


@dataclass
class _Running:
    settings: LinkSettings
    link: OperatorLink
    task: asyncio.Task[None]


async def load_link_settings(runtime: Runtime) -> dict[str, LinkSettings]:
    """Settings of every enabled SMPP operator, by operator id."""
    async with runtime.sessions() as session:
        operators = (
            await session.execute(
                select(Operator).where(Operator.kind == "smpp", Operator.enabled.is_(True))
            )
        ).scalars()
        return {
            operator.id: link_settings(
                operator_id=operator.id,
                host=operator.host,
                port=operator.port,
                system_id=operator.system_id,
                password=operator.password,
                tps=operator.tps,
                window=operator.window,
                settings=operator.settings,
            )
            for operator in operators
        }


class LinkManager:
    def __init__(
        self,
        runtime: Runtime,
        *,
        refresh_seconds: float = REFRESH_SECONDS,
        ownership: Ownership | None = None,
        tune: Callable[[LinkSettings], LinkSettings] | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._runtime = runtime
        self._refresh_seconds = refresh_seconds
        self._ownership = ownership
        self._tune = tune  # lets tests and benchmarks shorten timers
        self._rand = rand
        self._running: dict[str, _Running] = {}
        self._standby: set[str] = set()
        self._stopping = asyncio.Event()
        self.board: LinkBoard = board_for(runtime)
        self.refreshed = asyncio.Event()  # set after each look at the operators

    def links(self) -> dict[str, OperatorLink]:
        return {operator_id: running.link for operator_id, running in self._running.items()}

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        ownership = self._ownership or ownership_for(self._runtime.engine)
        self._ownership = ownership
        try:
            while not self._stopping.is_set():
                try:
                    await self.refresh()
                except Exception:
                    log.exception("could not refresh the operator links")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._refresh_seconds)
        finally:
            for operator_id in list(self._running):
                await self._stop_link(operator_id)
            for operator_id in list(self._standby):
                self.board.remove(operator_id)
            await ownership.close()

    async def refresh(self) -> None:
        """Look at the operators once: start, stop and restart links as needed."""
        ownership = self._ownership
        assert ownership is not None, "run() sets up ownership"
        wanted = await load_link_settings(self._runtime)
        if self._tune is not None:
            wanted = {key: self._tune(value) for key, value in wanted.items()}
        for operator_id in await ownership.lost():
            log.error("%s: ownership lost, stopping the link", operator_id)
            await self._stop_link(operator_id, release=False)
        for operator_id, running in list(self._running.items()):
            if running.task.done():
                if not running.task.cancelled() and running.task.exception() is not None:
                    log.error("%s: link failed", operator_id, exc_info=running.task.exception())
                await self._stop_link(operator_id)
            elif wanted.get(operator_id) != running.settings:
                log.info("%s: operator changed or disabled, stopping its link", operator_id)
                await self._stop_link(operator_id)
        for operator_id in list(self._standby):
            if operator_id not in wanted:
                self._standby.discard(operator_id)
                self.board.remove(operator_id)
        for operator_id, settings in wanted.items():
            if operator_id in self._running or self._stopping.is_set():
                continue
            if await ownership.acquire(operator_id):
                self._standby.discard(operator_id)
                self._start_link(settings)
            elif operator_id not in self._standby:
                self._standby.add(operator_id)
                standby = LinkState(
                    operator_id=operator_id,
                    host=settings.host,
                    port=settings.port,
                    bind_mode=settings.bind_mode,
                    window=settings.window,
                    tps_limit=settings.tps,
                )
                standby.set_status("standby")
                self.board.put(standby)
        self.refreshed.set()

    def _start_link(self, settings: LinkSettings) -> None:
        link = OperatorLink(settings, self._runtime, rand=self._rand)
        self.board.put(link.state)
        task = asyncio.create_task(link.run(), name=f"link {settings.operator_id}")
        self._running[settings.operator_id] = _Running(settings, link, task)
        log.info("%s: link started (%s)", settings.operator_id, settings.redacted())

    async def _stop_link(self, operator_id: str, *, release: bool = True) -> None:
        running = self._running.pop(operator_id, None)
        if running is None:
            return
        running.link.stop()
        grace = running.settings.response_timeout_seconds + STOP_GRACE_SECONDS
        done, _ = await asyncio.wait([running.task], timeout=grace)
        if not done:
            log.error("%s: link did not stop in %.0fs, cancelling it", operator_id, grace)
            running.task.cancel()
            await asyncio.gather(running.task, return_exceptions=True)
        self.board.remove(operator_id)
        if release and self._ownership is not None:
            await self._ownership.release(operator_id)
