"""The worker's sweep of early receipts (services/dlr_sweep.py), run beside its job loop.

Every ``receipt_sweep_seconds`` it applies the unmatched receipts whose part has been written
since they came. Such a part is nearly always written within milliseconds of its receipt (the
link writes a submit outcome within ``links/writer.GATHER_SECONDS`` of the response, retrying
for a few seconds at worst), so each sweep looks back ``RECENT_SECONDS`` only; once a minute,
and when the worker starts, it looks back the whole ``receipt_sweep_window_seconds``, which
catches parts written while no worker ran. A receipt that never matches (a message never
sent) thus costs one index look-up per sweep for its first minute, then one a minute until it
leaves the window, then nothing.

Many workers may sweep at once: each report is applied once (the sweep's row locks, or
SQLite's write lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import timedelta
from typing import Final

from smsgate.runtime import Runtime
from smsgate.services.dlr_sweep import BATCH, apply_waiting_receipts, waiting_receipts

log = logging.getLogger("smsgate.worker")

RECENT_SECONDS: Final = 60.0
FULL_SWEEP_SECONDS: Final = 60.0


class ReceiptSweep:
    def __init__(self, runtime: Runtime, *, interval_seconds: float, window_seconds: float) -> None:
        if interval_seconds <= 0 or window_seconds <= 0:
            raise ValueError("the sweep's interval and window must be positive")
        self._runtime = runtime
        self._interval = interval_seconds
        self._window = timedelta(seconds=window_seconds)
        self._recent = timedelta(seconds=min(window_seconds, RECENT_SECONDS))
        self._stopping = asyncio.Event()
        self.applied = 0  # receipts applied since the start, for tests and logs

    async def sweep(self, *, full: bool = True) -> int:
        """One sweep: every waiting receipt of the window (``full``) or of its recent part,
        in transactions of up to ``BATCH``; returns how many were applied."""
        since = self._runtime.clock.now() - (self._window if full else self._recent)
        # A read: on SQLite it takes no write lock, so an idle sweep never holds up a writer.
        async with self._runtime.read_sessions.begin() as session:
            waiting = await waiting_receipts(session, since=since)
        applied = 0
        for start in range(0, len(waiting), BATCH):
            async with self._runtime.sessions.begin() as session:
                applied += await apply_waiting_receipts(
                    session, waiting[start : start + BATCH], now=self._runtime.clock.now()
                )
        if applied:
            self.applied += applied
            log.info("applied %d receipts that came before their parts were written", applied)
        return applied

    async def run(self) -> None:
        """Sweep every interval until :meth:`stop`; a failed sweep is logged and retried."""
        last_full = -FULL_SWEEP_SECONDS
        while not self._stopping.is_set():
            full = time.monotonic() - last_full >= FULL_SWEEP_SECONDS
            if full:
                last_full = time.monotonic()
            try:
                await self.sweep(full=full)
            except Exception:
                log.exception("the sweep of early receipts failed; trying again")
                last_full = -FULL_SWEEP_SECONDS  # what it missed is looked at again in full
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)

    def stop(self) -> None:
        self._stopping.set()
