"""The simulator's control API (``/sim``, DESIGN.md section 3), fuzzed by schemathesis over its
own OpenAPI document: valid and invalid requests to every operation, with the provisioned
operators, numbers and handsets part of the time. JSON in and out; a client error is a 4xx
problem (docs/http_errors.md).
The only 5xx are the simulator's own word that the gateway on the other side did not take an
MO or a call (502) or did not answer in time (504), and only on ``/sim/mo`` and ``/sim/calls``.
No ESME is bound here, so nothing waits longer than the few milliseconds the cases allow."""

from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import negative_data_rejection, not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.schemas import APIOperation
from tests.acceptance.fuzz.cases import send_case
from tests.acceptance.fuzz.fuzz_env import DOCUMENT, MSISDNS, OPERATORS, SHORT_NUMBERS

from smsgate.simulator.config import config_from_mapping
from smsgate.simulator.control import build_app
from smsgate.simulator.simulator import Simulator


def _simulator() -> Simulator:
    return Simulator(config_from_mapping(tomllib.loads(DOCUMENT), source="fuzz.toml"))


CONFIG = schemathesis.Config.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": ["4xx"]}}}
)
SCHEMA = schemathesis.openapi.from_dict(build_app(_simulator()).openapi(), config=CONFIG)
OPERATIONS: dict[str, APIOperation] = {
    f"{op.method.upper()} {op.path}": op
    for op in (result.ok() for result in SCHEMA.get_all_operations())
}
UPSTREAM = {"POST /sim/mo", "POST /sim/calls"}  # may answer 502/504 for the gateway's part
KNOWN: dict[str, st.SearchStrategy[Any]] = {
    "msisdn": st.sampled_from([m for m in MSISDNS if " " not in m]),
    "from": st.sampled_from(MSISDNS[:2]),
    "short_number": st.sampled_from(SHORT_NUMBERS),
    "to": st.sampled_from(SHORT_NUMBERS),
    "operator": st.sampled_from(OPERATORS),
    "scenario": st.sampled_from(["throttle", "unbind_on_submit", "slow", "nonexistent"]),
}


@pytest.fixture
async def simulator_app() -> AsyncIterator[FastAPI]:
    simulator = _simulator()
    await simulator.start("127.0.0.1", 0)  # its SMSC on a free port; no ESME binds to it
    try:
        yield build_app(simulator)
    finally:
        await simulator.stop()


def _season(case: Case, data: st.DataObject) -> None:
    meta = case.meta
    components = meta.components if meta is not None else {}
    for location, values in (
        (ParameterLocation.PATH, case.path_parameters),
        (ParameterLocation.QUERY, case.query),
        (ParameterLocation.BODY, case.body if isinstance(case.body, dict) else None),
    ):
        component = components.get(location)
        if not values or (component is not None and component.mode.is_negative):
            continue
        for name in list(values):
            if name in KNOWN and data.draw(st.booleans()):
                values[name] = data.draw(KNOWN[name])
        if location is ParameterLocation.BODY and "timeout_ms" in values:
            values["timeout_ms"] = 5  # nothing is bound: do not wait for an answer


@pytest.mark.slow
@pytest.mark.parametrize("label", list(OPERATIONS))
@settings(
    max_examples=20,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)
@given(data=st.data())
async def test_simulator_control_answers_json_and_4xx(
    simulator_app: FastAPI, label: str, data: st.DataObject
) -> None:
    mode = data.draw(st.sampled_from([GenerationMode.POSITIVE, GenerationMode.NEGATIVE]))
    case = data.draw(OPERATIONS[label].as_strategy(generation_mode=mode), label="case")
    _season(case, data)
    note(f"{case.method} {case.formatted_path} query={case.query!r} body={case.body!r}")
    raw, response = await send_case(simulator_app, case, "127.0.0.1")
    if label in UPSTREAM and raw.status in (502, 504):
        event(f"{label}: upstream {raw.status}")
    else:
        case.validate_response(response, checks=[not_a_server_error, negative_data_rejection])
    assert raw.status < 500 or label in UPSTREAM, raw
    if 400 <= raw.status < 500:
        assert raw.content_type.startswith(b"application/problem+json"), raw
    else:  # a 502 of /sim/mo may be the MO's outcome, not a problem
        assert raw.content_type.startswith((b"application/json", b"application/problem+json")), raw
    raw.json()
    event(f"{mode.value}: {raw.status}")
