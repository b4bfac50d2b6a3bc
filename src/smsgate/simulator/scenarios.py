"""Fault scenarios: small classes that make the simulated SMSC misbehave on purpose.

Each scenario answers two questions, both optional: should this bind be refused
(:meth:`Scenario.on_bind`), and how should this message submission be answered
(:meth:`Scenario.on_submit`, which returns a :class:`Reaction` or ``None`` for "as usual").
Scenarios are switched on and off at run time (``POST /sim/faults``) for every operator or
for one; their parameters are validated by pydantic from the dataclass fields.

    drop_connection   close the TCP connection instead of answering a submit
    throttle          answer ESME_RTHROTTLED
    queue_full        answer ESME_RMSGQFUL
    slow              answer after a delay
    refuse_bind       refuse binds (ESME_RBINDFAIL, or the status given)
    garbage           write a malformed PDU before the answer
    limited_rate      accept N messages a second, throttle the rest
    reject            answer a permanent error (ESME_RSUBMITFAIL, or the status given)
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

from smsgate.smpp.constants import CommandStatus

Monotonic = Callable[[], float]

# A well-framed PDU whose command_id SMPP 3.4 does not define: the ESME should answer it
# with generic_nack ESME_RINVCMDID (§4.3) and carry on.
UNKNOWN_COMMAND_PDU: Final = bytes.fromhex("00000010000000ff000000007fffffff")
# A command_length below the header size: the stream can no longer be framed (§3.2).
BROKEN_FRAME: Final = bytes.fromhex("00000004deadbeef00000000")


@dataclass(frozen=True, slots=True)
class Reaction:
    """How to answer one submission instead of the usual way.

    ``status`` non-zero: answer with that command_status and do not accept the message.
    ``delay``: seconds to wait before the answer. ``drop``: close the connection, no answer.
    ``garbage``: octets to write before the answer; ``close_after_garbage`` then closes.
    """

    status: int = 0
    delay: float = 0.0
    drop: bool = False
    garbage: bytes = b""


class Scenario:
    """Base class: a scenario that changes nothing."""

    name: ClassVar[str] = ""
    # pydantic reads this when it validates a subclass's parameters: no unknown keys.
    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(extra="forbid")

    def on_bind(self) -> int | None:
        """A command_status to refuse the bind with, or None to let it through."""
        return None

    def on_submit(self, now: float) -> Reaction | None:
        """How to answer a submission at monotonic time ``now``; None for the usual answer."""
        return None

    @property
    def exhausted(self) -> bool:
        """True when the scenario has done what it was asked and can be switched off."""
        return False

    def params(self) -> dict[str, Any]:
        """The parameters the scenario was switched on with."""
        if not is_dataclass(self):
            return {}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}


Count = Annotated[int, Field(ge=0, le=1_000_000, strict=True)]
Millis = Annotated[int, Field(ge=0, le=600_000, strict=True)]
Status = Annotated[int, Field(ge=1, le=0xFFFFFFFF, strict=True)]
Flag = Annotated[bool, Field(strict=True)]


@dataclass
class DropConnection(Scenario):
    """Close the connection on a submit, after ``after`` accepted ones; ``once``: then stop."""

    name: ClassVar[str] = "drop_connection"
    after: Count = 0
    once: Flag = True
    _seen: int = field(default=0, init=False, repr=False)
    _dropped: int = field(default=0, init=False, repr=False)

    def on_submit(self, now: float) -> Reaction | None:
        if self.exhausted:
            return None
        self._seen += 1
        if self._seen <= self.after:
            return None
        self._dropped += 1
        return Reaction(drop=True)

    @property
    def exhausted(self) -> bool:
        return self.once and self._dropped > 0


@dataclass
class Throttle(Scenario):
    """Every submission answered ESME_RTHROTTLED (SMPP 3.4 §5.1.3: the ESME sends too fast)."""

    name: ClassVar[str] = "throttle"

    def on_submit(self, now: float) -> Reaction | None:
        return Reaction(status=CommandStatus.ESME_RTHROTTLED)


@dataclass
class QueueFull(Scenario):
    """Every submission answered ESME_RMSGQFUL: the SMSC's queue for the ESME is full."""

    name: ClassVar[str] = "queue_full"

    def on_submit(self, now: float) -> Reaction | None:
        return Reaction(status=CommandStatus.ESME_RMSGQFUL)


@dataclass
class Slow(Scenario):
    """Every submission answered after ``delay_ms`` milliseconds."""

    name: ClassVar[str] = "slow"
    delay_ms: Millis = 500

    def on_submit(self, now: float) -> Reaction | None:
        return Reaction(delay=self.delay_ms / 1000)


@dataclass
class RefuseBind(Scenario):
    """Binds refused with ``status`` (ESME_RBINDFAIL by default)."""

    name: ClassVar[str] = "refuse_bind"
    status: Status = CommandStatus.ESME_RBINDFAIL

    def on_bind(self) -> int | None:
        return self.status


@dataclass
class Garbage(Scenario):
    """A malformed PDU on the wire before each submission's answer.

    ``unknown_command``: a well-framed PDU with an undefined command_id (the ESME should
    generic_nack it and carry on). ``broken_frame``: a command_length below 16, after which
    the stream cannot be framed; the connection is closed right after it.
    """

    name: ClassVar[str] = "garbage"
    kind: Literal["unknown_command", "broken_frame"] = "unknown_command"

    def on_submit(self, now: float) -> Reaction | None:
        if self.kind == "broken_frame":
            return Reaction(garbage=BROKEN_FRAME, drop=True)
        return Reaction(garbage=UNKNOWN_COMMAND_PDU)


@dataclass
class LimitedRate(Scenario):
    """At most ``per_second`` submissions accepted in any one-second window; the rest
    throttled (an SMSC that enforces the operator's contracted TPS)."""

    name: ClassVar[str] = "limited_rate"
    per_second: Count = 2
    _window_start: float = field(default=-1.0, init=False, repr=False)
    _count: int = field(default=0, init=False, repr=False)

    def on_submit(self, now: float) -> Reaction | None:
        # A fixed one-second window: simple, and what most SMSCs count by.
        if now - self._window_start >= 1.0:
            self._window_start = now
            self._count = 0
        if self._count < self.per_second:
            self._count += 1
            return None
        return Reaction(status=CommandStatus.ESME_RTHROTTLED)


@dataclass
class Reject(Scenario):
    """Every submission refused with a permanent error (ESME_RSUBMITFAIL by default)."""

    name: ClassVar[str] = "reject"
    status: Status = CommandStatus.ESME_RSUBMITFAIL

    def on_submit(self, now: float) -> Reaction | None:
        return Reaction(status=self.status)


SCENARIOS: Final[dict[str, type[Scenario]]] = {
    cls.name: cls
    for cls in (DropConnection, Throttle, QueueFull, Slow, RefuseBind, Garbage, LimitedRate, Reject)
}


class ScenarioError(ValueError):
    """An unknown scenario name or parameters it does not accept."""


def make_scenario(name: str, params: Mapping[str, Any] | None = None) -> Scenario:
    cls = SCENARIOS.get(name)
    if cls is None:
        raise ScenarioError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    try:
        scenario: Scenario = TypeAdapter(cls).validate_python(dict(params or {}))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or name}: {e['msg']}" for e in exc.errors()
        )
        raise ScenarioError(f"{name}: {problems}") from None
    return scenario


@dataclass(slots=True)
class ActiveFault:
    id: int
    scenario: Scenario
    operator: str | None  # None: every operator
    triggered: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "scenario": self.scenario.name,
            "operator": self.operator,
            "params": self.scenario.params(),
            "triggered": self.triggered,
        }


class Faults:
    """The scenarios switched on, in the order they were switched on."""

    def __init__(self, monotonic: Monotonic = time.monotonic) -> None:
        self._active: list[ActiveFault] = []
        self._ids = itertools.count(1)
        self._monotonic = monotonic

    def __bool__(self) -> bool:
        return bool(self._active)

    def add(self, scenario: Scenario, operator: str | None = None) -> ActiveFault:
        fault = ActiveFault(next(self._ids), scenario, operator)
        self._active.append(fault)
        return fault

    def remove(self, fault_id: int) -> bool:
        before = len(self._active)
        self._active = [f for f in self._active if f.id != fault_id]
        return len(self._active) != before

    def clear(self, operator: str | None = None) -> int:
        """Switch off every fault (or those scoped to ``operator``); how many were on."""
        keep = [f for f in self._active if operator is not None and f.operator != operator]
        removed = len(self._active) - len(keep)
        self._active = keep
        return removed

    def list(self) -> list[ActiveFault]:
        return list(self._active)

    def bind_refusal(self, operator: str) -> int | None:
        for fault in self._active:
            if fault.operator in (None, operator):
                status = fault.scenario.on_bind()
                if status is not None:
                    fault.triggered += 1
                    return status
        return None

    def submit_reaction(self, operator: str) -> Reaction | None:
        """The combined reaction of the faults for one submission: delays add up, the first
        refusal, drop or garbage wins."""
        now = self._monotonic()
        delay = 0.0
        chosen: Reaction | None = None
        for fault in self._active:
            if fault.operator not in (None, operator):
                continue
            reaction = fault.scenario.on_submit(now)
            if reaction is None:
                continue
            fault.triggered += 1
            delay += reaction.delay
            if reaction.status or reaction.drop or reaction.garbage:
                chosen = reaction
                break
        self._active = [f for f in self._active if not f.scenario.exhausted]
        if chosen is None:
            return Reaction(delay=delay) if delay else None
        if delay and not chosen.delay:
            return Reaction(chosen.status, delay, chosen.drop, chosen.garbage)
        return chosen
