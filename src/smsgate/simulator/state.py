"""The simulator's shared state: configuration, handsets, faults, receipt settings, counters.

One :class:`SimState` is shared by the SMPP side (smsc.py), the control API (control.py) and
the :class:`~smsgate.simulator.simulator.Simulator` facade. Everything runs on one event loop,
so plain attributes need no locks.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass
from typing import Any

from smsgate.domain.clock import Clock, SystemClock
from smsgate.simulator.config import SimulatorConfig
from smsgate.simulator.handsets import Handsets
from smsgate.simulator.messages import Mailroom, MoBuilder
from smsgate.simulator.receipts import DlrSettings
from smsgate.simulator.scenarios import Faults, Monotonic
from smsgate.simulator.tracking import Tracker


@dataclass(slots=True)
class Counters:
    """What ``GET /sim/stats`` reports (besides live sessions and queues)."""

    binds: int = 0
    bind_failures: int = 0
    submits: int = 0  # message parts accepted (submit_sm, data_sm, submit_multi destinations)
    submits_refused: int = 0  # answered with an error status by a fault scenario
    messages_completed: int = 0  # whole messages put in an inbox
    queries: int = 0
    cancels: int = 0
    replaces: int = 0
    mos_injected: int = 0
    mo_parts_sent: int = 0
    charges: int = 0
    calls: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class SimState:
    def __init__(
        self,
        config: SimulatorConfig,
        *,
        clock: Clock | None = None,
        monotonic: Monotonic = time.monotonic,
    ) -> None:
        options = config.options
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.handsets = Handsets(
            inbox_limit=options.inbox_limit,
            default_balance_minor=options.default_balance_minor,
        )
        self.mailroom = Mailroom(self.handsets)
        self.mo_builder = MoBuilder()
        self.faults = Faults(monotonic)
        self.tracker = Tracker()
        self.counters = Counters()
        self.default_dlr = options.dlr
        self.operator_dlr: dict[str, DlrSettings] = {}
        self.message_numbers = itertools.count(options.first_message_id)

    def dlr_settings(self, operator: str) -> DlrSettings:
        return self.operator_dlr.get(operator, self.default_dlr)

    def set_dlr(self, settings: DlrSettings, operator: str | None = None) -> None:
        """Receipt settings for one operator, or the default for all (which also clears the
        per-operator ones, so "set it for everyone" means everyone)."""
        if operator is None:
            self.default_dlr = settings
            self.operator_dlr.clear()
        else:
            self.operator_dlr[operator] = settings
