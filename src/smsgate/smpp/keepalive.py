"""Keep-alive of a session: enquire_link when the link goes quiet, close when it stays silent."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from .errors import (
    ConnectionLost,
    GenericNackReceived,
    PduError,
    ResponseTimeout,
    UnexpectedResponse,
)


class Keepalive:
    """Watches how long the peer has been silent (``last_heard``, set by whoever reads).

    After ``interval`` of silence it sends enquire_link (one at a time), and closes the
    session when that fails or after ``inactivity`` of silence. Either may be None: never.
    """

    def __init__(
        self,
        interval: float | None,
        inactivity: float | None,
        *,
        enquire_link: Callable[[], Awaitable[object]],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        close: Callable[[str], None],
        closed: Callable[[], bool],
        may_enquire: Callable[[], bool],
    ) -> None:
        self.interval = interval
        self.inactivity = inactivity
        self._enquire_link = enquire_link
        self._spawn = spawn
        self._close = close
        self._closed = closed
        self._may_enquire = may_enquire
        self._loop = asyncio.get_running_loop()
        self.last_heard = self._loop.time()
        self._enquiring = False

    @property
    def needed(self) -> bool:
        """False when neither timer is set: ``run`` would have nothing to do."""
        return self.interval is not None or self.inactivity is not None

    async def run(self) -> None:
        interval = self.interval
        inactivity = self.inactivity
        while not self._closed():
            now = self._loop.time()
            quiet = now - self.last_heard
            if inactivity is not None and quiet >= inactivity:
                self._close(f"nothing heard for {quiet:.1f}s")
                return
            wake = [self.last_heard + inactivity] if inactivity is not None else []
            if interval is not None:
                if quiet < interval:
                    wake.append(self.last_heard + interval)
                else:
                    if not self._enquiring and self._may_enquire():
                        self._enquiring = True
                        self._spawn(self._probe())
                    wake.append(now + interval)
            await asyncio.sleep(max(min(wake) - self._loop.time(), 0.001))

    async def _probe(self) -> None:
        try:
            await self._enquire_link()
        except (ResponseTimeout, GenericNackReceived, UnexpectedResponse, PduError) as exc:
            self._close(f"enquire_link failed: {exc}")
        except ConnectionLost:
            pass
        finally:
            self._enquiring = False
