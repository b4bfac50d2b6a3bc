"""Confirming the MO redelivery guards of a link (``mo_store.py``): after the responses of a
batch, an enquire_link on the same connection; its answer proves the SMSC has read them (one
TCP stream, read in order), and the batch's guards no longer guard anything.

The confirmed guards are deleted by the next batch of MOs, in its own transaction and before
it looks for guards (:meth:`ConfirmedGuards.take`): a transaction for each confirmation would
double the link's writes under a stream of MOs. When no batch comes within
:data:`FLUSH_SECONDS`, a transaction of their own deletes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from smsgate.links import mo_store
from smsgate.links.state import LinkState
from smsgate.smpp import EnquireLink, SmppError, SmppSession

FLUSH_SECONDS: Final = 0.25


class ConfirmedGuards:
    """The guards of one link's MOs, from their responses to their deletion."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        state: LinkState,
        response_timeout: float,
        storing: Callable[[], asyncio.Task[None] | None],
    ) -> None:
        self._sessions = sessions
        self._state = state
        self._timeout = response_timeout
        self._storing = storing  # the task storing MOs, if one is under way
        self._confirmed: list[int] = []
        self._probes: set[asyncio.Task[None]] = set()
        self._flush: asyncio.Task[None] | None = None

    def probe(self, session: SmppSession, guard_ids: list[int]) -> None:
        """Confirm these guards with an enquire_link after the responses just given."""
        probe = asyncio.get_running_loop().create_task(self._confirm(session, guard_ids))
        self._probes.add(probe)
        probe.add_done_callback(self._probes.discard)

    def take(self) -> list[int]:
        """The confirmed guards, for a transaction to delete (:meth:`restore` if it fails):
        each is taken by one transaction only."""
        confirmed, self._confirmed = self._confirmed, []
        return confirmed

    def restore(self, confirmed: list[int]) -> None:
        self._confirmed[:0] = confirmed

    async def close(self) -> None:
        """Stop confirming; delete what is confirmed already."""
        for probe in list(self._probes):
            probe.cancel()
        await asyncio.gather(*self._probes, return_exceptions=True)
        if self._flush is not None:
            self._flush.cancel()
            await asyncio.gather(self._flush, return_exceptions=True)
        await self._delete()

    async def _confirm(self, session: SmppSession, guard_ids: list[int]) -> None:
        # The handlers write their responses when they resume, which the loop does before
        # this task's first step; one more pass makes the order certain.
        await asyncio.sleep(0)
        try:
            await session.send_request(EnquireLink(), self._timeout)
        except SmppError:
            return  # unconfirmed: the guards stay and recognise a redelivery
        self._confirmed.extend(guard_ids)
        if self._flush is None or self._flush.done():
            self._flush = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        """Delete the confirmed guards no batch has taken along."""
        await asyncio.sleep(FLUSH_SECONDS)
        storing = self._storing()
        if storing is not None and not storing.done():
            # MOs are being stored: let them end, then take what they did not.
            await asyncio.wait({storing})  # (wait, unlike gather, never cancels it)
        await self._delete()

    async def _delete(self) -> None:
        """The confirmed guards, in a transaction of their own."""
        confirmed = self.take()
        if not confirmed:
            return
        try:
            async with self._sessions() as db, db.begin():
                await mo_store.confirm_acks(db, confirmed)
        except Exception as exc:
            self.restore(confirmed)
            self._state.error("database", str(exc))  # the guards expire on their own
