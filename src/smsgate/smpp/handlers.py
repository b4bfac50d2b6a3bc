"""Running the owner's handler on incoming requests and turning its outcome into an answer."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from .constants import CommandStatus
from .errors import PduError
from .options import Handler, IncomingPdu
from .pdu import Response

log = logging.getLogger(__name__)
S = CommandStatus

Outcome = Response | int | None
"""The handler's response (None for a notification), or the status to refuse with."""


class HandlerRunner:
    """Calls the handler on each incoming request and passes the outcome to ``finish``.

    A plain result is finished at once; an awaitable one runs as a task, at most
    ``concurrency`` at a time: past that, ``run`` waits, and so does the session's reading.
    A PduError from the handler becomes its status, any other failure ESME_RSYSERR.
    """

    def __init__(
        self, concurrency: int, finish: Callable[[IncomingPdu, Outcome], None], name: str
    ) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._finish = finish
        self._name = name
        self.tasks: set[asyncio.Future[Any]] = set()
        """Handlers still running, and other work of the session to cancel when it closes."""

    async def run(self, handler: Handler | None, pdu: IncomingPdu) -> None:
        try:
            if handler is None:
                raise PduError(S.ESME_RINVCMDID, "no handler for incoming requests")
            result = handler(pdu)
        except PduError as error:
            self._finish(pdu, error.command_status)
            return
        except Exception:
            log.exception("%s: handler failed on %s", self._name, pdu.command_id.name)
            self._finish(pdu, S.ESME_RSYSERR)
            return
        if result is None or isinstance(result, Response):
            self._finish(pdu, result)  # answered at once: no task needed
            return
        try:
            await self._slots.acquire()
        except asyncio.CancelledError:
            if inspect.iscoroutine(result):
                result.close()
            raise
        # The handler's own coroutine becomes the task, so cancelling it before it starts
        # (the session closing) leaves no coroutine un-awaited.
        task = asyncio.ensure_future(result)
        self.tasks.add(task)
        task.add_done_callback(functools.partial(self._done, pdu))

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` as a task that ends with the session, outside the handler slots."""
        task = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _done(self, pdu: IncomingPdu, task: asyncio.Future[Response | None]) -> None:
        self.tasks.discard(task)
        self._slots.release()
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            self._finish(pdu, task.result())
        elif isinstance(error, PduError):
            self._finish(pdu, error.command_status)
        else:
            log.error("%s: handler failed on %s", self._name, pdu.command_id.name, exc_info=error)
            self._finish(pdu, S.ESME_RSYSERR)
