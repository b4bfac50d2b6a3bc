"""The built-in operator: an SMSC over SMPP 3.4 with handsets, billing, calls and faults.

The public surface is here; see docs/simulator.md.
"""

from smsgate.simulator.calls import CallEvent, CallOutcome, CallSink, HttpCallSink
from smsgate.simulator.config import (
    SimOperator,
    SimShortNumber,
    SimulatorConfig,
    SimulatorOptions,
    config_from_mapping,
    load_config,
)
from smsgate.simulator.handsets import Charge, InboxMessage
from smsgate.simulator.receipts import DlrSettings
from smsgate.simulator.scenarios import SCENARIOS, ScenarioError
from smsgate.simulator.simulator import MoResult, Simulator, SimulatorError

__all__ = [
    "SCENARIOS",
    "CallEvent",
    "CallOutcome",
    "CallSink",
    "Charge",
    "DlrSettings",
    "HttpCallSink",
    "InboxMessage",
    "MoResult",
    "ScenarioError",
    "SimOperator",
    "SimShortNumber",
    "Simulator",
    "SimulatorConfig",
    "SimulatorError",
    "SimulatorOptions",
    "config_from_mapping",
    "load_config",
]
