"""Fault scenarios as plain objects: what each answers, and how they combine."""

from __future__ import annotations

import pytest

from smsgate.simulator.scenarios import (
    BROKEN_FRAME,
    SCENARIOS,
    UNKNOWN_COMMAND_PDU,
    Faults,
    Reaction,
    ScenarioError,
    make_scenario,
)
from smsgate.smpp.codec import decode
from smsgate.smpp.constants import CommandStatus
from smsgate.smpp.errors import PduError

S = CommandStatus


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_every_scenario_of_the_brief_exists() -> None:
    assert set(SCENARIOS) == {
        "drop_connection",
        "throttle",
        "queue_full",
        "slow",
        "refuse_bind",
        "garbage",
        "limited_rate",
        "reject",
    }


@pytest.mark.parametrize(
    ("name", "params", "reaction"),
    [
        ("throttle", {}, Reaction(status=S.ESME_RTHROTTLED)),
        ("queue_full", {}, Reaction(status=S.ESME_RMSGQFUL)),
        ("reject", {}, Reaction(status=S.ESME_RSUBMITFAIL)),
        ("reject", {"status": 0x0B}, Reaction(status=0x0B)),
        ("slow", {"delay_ms": 250}, Reaction(delay=0.25)),
        ("garbage", {}, Reaction(garbage=UNKNOWN_COMMAND_PDU)),
        ("garbage", {"kind": "broken_frame"}, Reaction(garbage=BROKEN_FRAME, drop=True)),
        ("refuse_bind", {}, None),
    ],
)
def test_what_each_scenario_answers_a_submit(
    name: str, params: dict[str, object], reaction: Reaction | None
) -> None:
    assert make_scenario(name, params).on_submit(0.0) == reaction


def test_refuse_bind_refuses_binds_only() -> None:
    assert make_scenario("refuse_bind").on_bind() == S.ESME_RBINDFAIL
    assert make_scenario("refuse_bind", {"status": 0x0F}).on_bind() == 0x0F
    assert make_scenario("throttle").on_bind() is None


def test_the_garbage_pdus_are_what_they_claim() -> None:
    with pytest.raises(PduError) as unknown:
        decode(UNKNOWN_COMMAND_PDU)
    assert unknown.value.command_status == S.ESME_RINVCMDID
    assert int.from_bytes(BROKEN_FRAME[:4], "big") < 16


def test_drop_connection_after_n_then_once() -> None:
    faults = Faults()
    faults.add(make_scenario("drop_connection", {"after": 2}))
    reactions = [faults.submit_reaction("op") for _ in range(4)]
    assert reactions == [None, None, Reaction(drop=True), None]
    assert faults.list() == []


def test_drop_connection_every_time_when_not_once() -> None:
    faults = Faults()
    faults.add(make_scenario("drop_connection", {"once": False}))
    assert [faults.submit_reaction("op") for _ in range(3)] == [Reaction(drop=True)] * 3


def test_limited_rate_counts_per_second() -> None:
    clock = Clock()
    faults = Faults(clock)
    faults.add(make_scenario("limited_rate", {"per_second": 3}))
    first = [faults.submit_reaction("op") for _ in range(5)]
    clock.now += 0.999
    still = faults.submit_reaction("op")
    clock.now += 0.001
    after = [faults.submit_reaction("op") for _ in range(4)]
    throttled = Reaction(status=S.ESME_RTHROTTLED)
    assert first == [None, None, None, throttled, throttled]
    assert still == throttled
    assert after == [None, None, None, throttled]


def test_delays_add_up_and_the_first_refusal_wins() -> None:
    faults = Faults()
    faults.add(make_scenario("slow", {"delay_ms": 100}))
    faults.add(make_scenario("throttle"))
    faults.add(make_scenario("reject"))
    assert faults.submit_reaction("op") == Reaction(status=S.ESME_RTHROTTLED, delay=0.1)


def test_faults_apply_to_their_operator() -> None:
    faults = Faults()
    mine = faults.add(make_scenario("throttle"), operator="op-a")
    assert faults.submit_reaction("op-b") is None
    assert faults.submit_reaction("op-a") == Reaction(status=S.ESME_RTHROTTLED)
    assert faults.bind_refusal("op-a") is None
    assert mine.triggered == 1


def test_clear_by_operator_and_remove_by_id() -> None:
    faults = Faults()
    a = faults.add(make_scenario("throttle"), operator="op-a")
    faults.add(make_scenario("slow"), operator="op-b")
    everyone = faults.add(make_scenario("queue_full"))
    assert faults.clear("op-b") == 1
    assert [f.id for f in faults.list()] == [a.id, everyone.id]
    assert faults.remove(a.id) and not faults.remove(a.id)
    assert faults.clear() == 1 and not faults


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("meteor", {}, "unknown scenario"),
        ("slow", {"delay_ms": -5}, "delay_ms"),
        ("slow", {"delay_ms": "5"}, "delay_ms"),
        ("throttle", {"status": 5}, "status"),
        ("garbage", {"kind": "noise"}, "kind"),
        ("limited_rate", {"per_second": 2.5}, "per_second"),
        ("drop_connection", {"_seen": 3}, "_seen"),
    ],
)
def test_bad_parameters_are_refused(name: str, params: dict[str, object], message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        make_scenario(name, params)


def test_params_report_what_was_switched_on() -> None:
    assert make_scenario("drop_connection", {"after": 3}).params() == {"after": 3, "once": True}
    assert make_scenario("throttle").params() == {}
    assert make_scenario("limited_rate", {"per_second": 9}).params() == {"per_second": 9}
