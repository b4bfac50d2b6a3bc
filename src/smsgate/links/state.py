"""What a link is doing, for people: a snapshot for the panel's JSON and Prometheus metrics.

Every link of this process registers its :class:`LinkState` on the :class:`LinkBoard` of its
runtime; ``GET /api/v1/links`` reads the board. A process that runs no links (``serve
--no-links``) has an empty board: ask the process that owns the links, or read ``/metrics``.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Gauge

from smsgate.metrics import REGISTRY

LINK_BOUND = Gauge(
    "smsgate_link_bound", "1 while the operator link is bound", ["operator"], registry=REGISTRY
)
LINK_IN_FLIGHT = Gauge(
    "smsgate_link_in_flight",
    "Requests sent on the link and not yet answered (the window in use)",
    ["operator"],
    registry=REGISTRY,
)
LINK_WINDOW = Gauge(
    "smsgate_link_window",
    "Outstanding requests allowed on the link",
    ["operator"],
    registry=REGISTRY,
)
LINK_SEND_RATE = Gauge(
    "smsgate_link_send_rate",
    "submit_sm per second the link allows itself now (lowered after ESME_RTHROTTLED)",
    ["operator"],
    registry=REGISTRY,
)
LINK_RECONNECTS = Counter(
    "smsgate_link_reconnects",
    "Connections to the SMSC opened again after a loss",
    ["operator"],
    registry=REGISTRY,
)
LINK_ERRORS = Counter(
    "smsgate_link_errors",
    "Link errors by kind (connect, bind, session, database, receipt)",
    ["operator", "kind"],
    registry=REGISTRY,
)
LINK_DELIVER_SM = Counter(
    "smsgate_link_deliver_sm",
    "deliver_sm received, by kind (mo, fragment, receipt, redelivery, refused)",
    ["operator", "kind"],
    registry=REGISTRY,
)


class RateMeter:
    """Events per second over the last few whole seconds (monotonic time injected)."""

    def __init__(self, seconds: int = 5, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._clock = clock
        self._counts: dict[int, int] = {}

    def add(self, count: int = 1) -> None:
        second = int(self._clock())
        self._counts[second] = self._counts.get(second, 0) + count
        if len(self._counts) > self._seconds + 2:
            for old in [s for s in self._counts if s < second - self._seconds]:
                del self._counts[old]

    def rate(self) -> float:
        now = int(self._clock())
        window = range(now - self._seconds, now)
        return sum(self._counts.get(second, 0) for second in window) / self._seconds


@dataclass
class LinkState:
    operator_id: str
    host: str
    port: int
    bind_mode: str
    window: int
    tps_limit: int
    # stopped | standby (another process owns the bind) | connecting | bound | backoff
    status: str = "stopped"
    bound_since: datetime | None = None
    submitted: int = 0
    throttled: int = 0
    failed: int = 0
    unknown: int = 0
    mo_received: int = 0
    receipts_received: int = 0
    errors: int = 0
    reconnects: int = 0
    last_error: str = ""
    in_flight: Callable[[], int] = field(default=lambda: 0, repr=False)
    send_rate: Callable[[], float] = field(default=lambda: 0.0, repr=False)
    submit_meter: RateMeter = field(default_factory=RateMeter, repr=False)

    def __post_init__(self) -> None:
        LINK_WINDOW.labels(self.operator_id).set(self.window)
        LINK_IN_FLIGHT.labels(self.operator_id).set_function(lambda: self.in_flight())
        LINK_SEND_RATE.labels(self.operator_id).set_function(lambda: self.send_rate())
        LINK_BOUND.labels(self.operator_id).set(0)

    def set_status(self, status: str, now: datetime | None = None) -> None:
        self.status = status
        bound = status == "bound"
        self.bound_since = now if bound else None
        LINK_BOUND.labels(self.operator_id).set(1 if bound else 0)

    def error(self, kind: str, message: str) -> None:
        self.errors += 1
        self.last_error = f"{kind}: {message}"[:500]
        LINK_ERRORS.labels(self.operator_id, kind).inc()

    def reconnected(self) -> None:
        self.reconnects += 1
        LINK_RECONNECTS.labels(self.operator_id).inc()

    def snapshot(self) -> dict[str, Any]:
        return {
            "operator": self.operator_id,
            "host": self.host,
            "port": self.port,
            "bind_mode": self.bind_mode,
            "status": self.status,
            "bound": self.status == "bound",
            "bound_since": self.bound_since.isoformat() if self.bound_since else None,
            "window": self.window,
            "in_flight": self.in_flight(),
            "tps_limit": self.tps_limit,
            "send_rate": round(self.send_rate(), 1),
            "submit_rate": round(self.submit_meter.rate(), 1),
            "submitted": self.submitted,
            "throttled": self.throttled,
            "failed": self.failed,
            "unknown": self.unknown,
            "mo_received": self.mo_received,
            "receipts_received": self.receipts_received,
            "errors": self.errors,
            "reconnects": self.reconnects,
            "last_error": self.last_error,
        }


class LinkBoard:
    """The link states of one running gateway (one runtime)."""

    def __init__(self) -> None:
        self._states: dict[str, LinkState] = {}

    def put(self, state: LinkState) -> None:
        self._states[state.operator_id] = state

    def remove(self, operator_id: str) -> None:
        self._states.pop(operator_id, None)
        LINK_BOUND.labels(operator_id).set(0)

    def snapshot(self) -> list[dict[str, Any]]:
        return [self._states[key].snapshot() for key in sorted(self._states)]


_BOARDS: dict[int, LinkBoard] = {}


def board_for(runtime: object) -> LinkBoard:
    """The board of ``runtime`` (created on first use, dropped with the runtime)."""
    key = id(runtime)
    board = _BOARDS.get(key)
    if board is None:
        board = _BOARDS[key] = LinkBoard()
        weakref.finalize(runtime, _BOARDS.pop, key, None)
    return board
