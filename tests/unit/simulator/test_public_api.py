"""The names other parts of smsgate (demo, link tests) import from the simulator."""

from __future__ import annotations

import smsgate.simulator as simulator


def test_the_public_surface() -> None:
    assert sorted(simulator.__all__) == sorted(
        [
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
    )
    for name in simulator.__all__:
        assert getattr(simulator, name) is not None


def test_the_simulator_methods_callers_rely_on() -> None:
    for method in (
        "start",
        "stop",
        "inject_mo",
        "inbox",
        "place_call",
        "charge",
        "set_balance",
        "set_dlr",
        "add_fault",
        "clear_faults",
        "stats",
        "wait_for_receiver",
        "receiver_bound",
        "http_router",
        "http_app",
    ):
        assert callable(getattr(simulator.Simulator, method)), method
