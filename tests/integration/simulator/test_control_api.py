"""The simulator's HTTP control API (DESIGN.md section 3), with SMPP on real sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import pytest
from sqlalchemy import select
from tests.factories import T0, add_operator
from tests.integration.simulator.sim_env import HANDSET, BindTransmitter, bound_esme, document

from smsgate.api.app import create_api
from smsgate.app import build_runtime
from smsgate.config import Settings
from smsgate.domain.clock import FakeClock
from smsgate.simulator import HttpCallSink, Simulator, SimulatorOptions, config_from_mapping
from smsgate.smpp.constants import CommandStatus
from smsgate.store.models import MoMessage


@pytest.fixture
async def api(sim: Simulator) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=sim.http_app())
    async with httpx2.AsyncClient(transport=transport, base_url="http://sim") as client:
        yield client


async def test_mo_then_inbox(sim: Simulator, api: httpx2.AsyncClient) -> None:
    async with bound_esme(sim.smpp_port) as esme:
        body = {"msisdn": HANDSET, "short_number": "1851", "text": "KOD", "operator": "sim-bg"}
        response = await api.post("/sim/mo", json=body)
        assert response.status_code == 200, response.text
        assert response.json() == {
            "status": "acknowledged",
            "operator": "sim-bg",
            "msisdn": HANDSET,
            "short_number": "1851",
            "price": "2.40",
            "currency": "BGN",
            "parts": 1,
            "command_statuses": [0],
            "message_ids": [],
        }
        mo = await esme.next_delivery()
        assert mo.short_message == b"KOD"
        reply = await esme.submit(b"Your code: AB12CD34", source_addr="1851")
        await esme.next_delivery()

    inbox = (await api.get(f"/sim/inbox/{HANDSET}")).json()
    assert len(inbox) == 1
    assert inbox[0]["text"] == "Your code: AB12CD34"
    assert inbox[0]["from"] == "1851"
    assert inbox[0]["at"].startswith("20")
    assert (inbox[0]["message_id"], inbox[0]["parts"], inbox[0]["operator"]) == (
        reply.message_id,
        1,
        "sim-bg",
    )
    assert (await api.get("/sim/inbox/359000000000")).json() == []
    assert (await api.delete(f"/sim/inbox/{HANDSET}")).json() == {"removed": 1}
    assert (await api.get(f"/sim/inbox/{HANDSET}")).json() == []


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"msisdn": HANDSET, "short_number": "1851", "text": "x"}, 409, "no_receiver"),
        ({"msisdn": HANDSET, "short_number": "4040", "text": "x"}, 404, "unknown_short_number"),
        ({"msisdn": HANDSET, "short_number": "1919", "text": "x"}, 422, "ambiguous_short_number"),
    ],
)
async def test_mo_errors(
    sim: Simulator, api: httpx2.AsyncClient, body: dict[str, str], status: int, error: str
) -> None:
    async with bound_esme(sim.smpp_port, BindTransmitter):
        response = await api.post("/sim/mo", json=body)
    assert response.status_code == status
    assert response.json()["error"] == error


async def test_mo_input_is_validated(api: httpx2.AsyncClient) -> None:
    response = await api.post("/sim/mo", json={"msisdn": "abc", "short_number": "1851"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["type"], problem["title"], problem["status"]) == (
        "about:blank",
        "Invalid request",
        422,
    )
    assert {tuple(e["loc"]) for e in problem["errors"]} == {("body", "msisdn"), ("body", "text")}


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [
        ("DELETE", "/sim/faults/999", 404, "unknown_fault"),
        ("POST", "/sim/calls", 409, "no_gateway"),
        ("GET", "/sim/nowhere", 404, None),
        ("PATCH", "/sim/stats", 405, None),
    ],
)
async def test_refusals_are_problem_details(
    api: httpx2.AsyncClient, method: str, path: str, status: int, error: str | None
) -> None:
    """The gateway's shape (docs/http_errors.md), with the simulator's word in ``error``."""
    body = {"from": HANDSET, "to": "1851"} if method == "POST" else None
    response = await api.request(method, path, json=body)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["type"], problem["status"], problem.get("error")) == (
        "about:blank",
        status,
        error,
    )
    assert problem["title"]


async def test_openapi_documents_problem_details(api: httpx2.AsyncClient) -> None:
    document = (await api.get("/sim/openapi.json")).json()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    responses = document["paths"]["/sim/mo"]["post"]["responses"]
    assert set(responses["422"]["content"]) == {"application/problem+json"}
    assert "4XX" in responses


async def test_faults_on_and_off(sim: Simulator, api: httpx2.AsyncClient) -> None:
    created = await api.post(
        "/sim/faults", json={"scenario": "reject", "params": {"status": 0x45}, "operator": "sim-bg"}
    )
    assert created.status_code == 201, created.text
    fault = created.json()
    assert (fault["scenario"], fault["operator"]) == ("reject", "sim-bg")
    assert fault["params"] == {"status": 0x45}
    await api.post("/sim/faults", json={"scenario": "slow", "params": {"delay_ms": 1}})

    listed = (await api.get("/sim/faults")).json()
    assert [f["scenario"] for f in listed["active"]] == ["reject", "slow"]
    assert set(listed["scenarios"]) >= {"throttle", "queue_full", "limited_rate", "garbage"}

    async with bound_esme(sim.smpp_port) as esme:
        assert (await esme.submit(b"x")).command_status == CommandStatus.ESME_RSUBMITFAIL
        assert (await api.delete(f"/sim/faults/{fault['id']}")).status_code == 200
        assert (await esme.submit(b"y")).command_status == 0
    assert (await api.delete("/sim/faults")).json() == {"removed": 1}
    assert (await api.delete("/sim/faults/999")).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"scenario": "meteor"},
        {"scenario": "slow", "params": {"delay_ms": "fast"}},
        {"scenario": "throttle", "params": {"unknown": 1}},
    ],
)
async def test_bad_faults_are_refused(api: httpx2.AsyncClient, body: dict[str, object]) -> None:
    response = await api.post("/sim/faults", json=body)
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_scenario"


async def test_dlr_settings(sim: Simulator, api: httpx2.AsyncClient) -> None:
    assert (await api.get("/sim/dlr")).json()["outcome"] == "DELIVRD"
    changed = await api.post("/sim/dlr", json={"outcome": "EXPIRED", "error_code": 5})
    assert changed.json() == {
        "delay_ms": 0,
        "outcome": "EXPIRED",
        "error_code": 5,
        "before_resp": False,
        "operator": None,
    }
    assert (await api.post("/sim/dlr", json={"outcome": "LOST"})).status_code == 422
    per_operator = await api.post("/sim/dlr", json={"operator": "sim-ro", "delay_ms": 10})
    assert per_operator.json()["outcome"] == "EXPIRED"  # starts from the current default
    async with bound_esme(sim.smpp_port) as esme:
        await esme.submit(b"x")
        receipt = await esme.next_delivery()
    assert b"stat:EXPIRED err:005" in receipt.short_message
    assert (await api.get("/sim/dlr")).json()["operators"]["sim-ro"]["delay_ms"] == 10


async def test_charges_against_a_balance(api: httpx2.AsyncClient) -> None:
    handset = await api.put(f"/sim/handsets/{HANDSET}", json={"balance": "5.00", "currency": "BGN"})
    assert handset.json()["balance"] == "5.00"
    charge = {
        "operator": "sim-bg",
        "msisdn": HANDSET,
        "amount": "3.00",
        "currency": "BGN",
        "reference": "rebill-1",
    }
    first = (await api.post("/sim/charges", json=charge)).json()
    assert (first["status"], first["balance"], first["duplicate"]) == ("ok", "2.00", False)
    repeat = (await api.post("/sim/charges", json=charge)).json()
    assert (repeat["status"], repeat["charge_id"], repeat["duplicate"]) == (
        "ok",
        first["charge_id"],
        True,
    )
    second = (await api.post("/sim/charges", json={**charge, "reference": "rebill-2"})).json()
    assert (second["status"], second["balance"]) == ("insufficient_funds", "2.00")
    euros = await api.post("/sim/charges", json={**charge, "reference": "r3", "currency": "EUR"})
    assert euros.json()["status"] == "currency_mismatch"
    state = (await api.get(f"/sim/handsets/{HANDSET}")).json()
    statuses = [c["status"] for c in state["charges"]]
    assert statuses == ["ok", "insufficient_funds", "currency_mismatch"]


async def test_charges_without_a_balance_always_pass(api: httpx2.AsyncClient) -> None:
    charge = {
        "operator": "sim-bg",
        "msisdn": HANDSET,
        "amount": "1.20",
        "currency": "BGN",
        "reference": "a",
    }
    answer = (await api.post("/sim/charges", json=charge)).json()
    assert (answer["status"], answer["balance"]) == ("ok", None)
    unknown = await api.post("/sim/charges", json={**charge, "operator": "nope"})
    assert unknown.status_code == 404
    bad = await api.post("/sim/charges", json={**charge, "amount": "1.234"})
    assert (bad.status_code, bad.json()["error"]) == (422, "invalid_amount")


async def test_stats(sim: Simulator, api: httpx2.AsyncClient) -> None:
    async with bound_esme(sim.smpp_port) as esme:
        await esme.submit(b"x")
        await esme.next_delivery()
        stats = (await api.get("/sim/stats")).json()
    assert stats["binds"] == 1 and stats["submits"] == 1 and stats["dlrs_sent"] == 1
    assert [s["operator"] for s in stats["sessions"]] == ["sim-bg"]


async def test_calls_need_a_gateway(api: httpx2.AsyncClient) -> None:
    response = await api.post("/sim/calls", json={"from": HANDSET, "to": "1851"})
    assert (response.status_code, response.json()["error"]) == (409, "no_gateway")


async def test_a_call_reaches_the_gateway_intake(database_url: str) -> None:
    """The simulator forwards the call to the real gateway intake, which records it."""
    runtime = build_runtime(Settings(database_url=database_url), clock=FakeClock(T0))
    async with runtime.sessions() as session, session.begin():
        await add_operator(session, "op-bg", intake_secret="intake-1")
    gateway = httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=create_api(runtime)), base_url="http://gw"
    )
    data = document(id="op-bg")
    data["short_numbers"] = [s for s in data["short_numbers"] if s["operator"] != "sim-bg"]
    options = SimulatorOptions(intake_secret="intake-1")
    sink = HttpCallSink("http://gw", lambda _operator: "intake-1", client=gateway)
    sim = Simulator(config_from_mapping(data, options=options), call_sink=sink)
    await sim.start("127.0.0.1", 0)
    try:
        transport = httpx2.ASGITransport(app=sim.http_app())
        async with httpx2.AsyncClient(transport=transport, base_url="http://sim") as api:
            response = await api.post(
                "/sim/calls", json={"from": "+359888123456", "to": "1851", "operator": "op-bg"}
            )
        assert response.status_code == 200, response.text
        answer = response.json()
        assert (answer["status"], answer["from"], answer["to"]) == ("forwarded", HANDSET, "1851")
        async with runtime.sessions() as session:
            mo = (await session.execute(select(MoMessage))).scalar_one()
        assert (mo.kind, mo.text) == ("call", "[waitcall]")
        assert mo.operator_message_id == f"call:{answer['call_id']}"
    finally:
        await sim.stop()
        await gateway.aclose()
        await runtime.engine.dispose()
