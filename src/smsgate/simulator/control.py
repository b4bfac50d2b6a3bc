"""The simulator's control API over HTTP, JSON in and out, under ``/sim`` (DESIGN.md section 3).

    POST   /sim/mo                 inject an MO (msisdn, short_number, text, operator)
    GET    /sim/inbox/{msisdn}     what a handset received, oldest first
    DELETE /sim/inbox/{msisdn}     empty one handset's inbox
    POST   /sim/calls              a call from -> to, forwarded to the gateway
    POST   /sim/charges            charge a handset (operator, msisdn, amount, currency, reference)
    GET    /sim/handsets/{msisdn}  balance and charges; PUT sets the balance
    GET    /sim/faults             scenarios switched on, and every scenario known
    POST   /sim/faults             switch one on; DELETE /sim/faults[/{id}] switches off
    GET    /sim/dlr                receipt settings; POST changes them
    GET    /sim/stats              counters, sessions, queues

Errors are RFC 9457 problem details (``application/problem+json``), as everywhere in the
gateway (docs/http_errors.md), with the simulator's own word for the refusal in ``error``.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from smsgate.api.problems import install_problem_handlers, problem_response
from smsgate.domain import money
from smsgate.simulator.calls import CallForwardingError
from smsgate.simulator.receipts import RECEIPT_STATES, DlrSettings
from smsgate.simulator.scenarios import SCENARIOS, ScenarioError
from smsgate.simulator.simulator import Simulator, SimulatorError

Msisdn = Annotated[str, Field(pattern=r"^\+?[0-9]{3,20}$", examples=["359888123456"])]
Number = Annotated[str, Field(pattern=r"^[0-9]{1,20}$", examples=["1851"])]
OperatorId = Annotated[str, Field(min_length=1, max_length=64)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class MoIn(_In):
    msisdn: Msisdn
    short_number: Number
    text: Annotated[str, Field(max_length=4000)]
    operator: OperatorId | None = None
    wait: bool = Field(True, description="Answer after the ESME acknowledged the MO.")
    timeout_ms: Annotated[int, Field(ge=1, le=60_000)] = 10_000
    copies: Annotated[int, Field(ge=1, le=10)] = Field(
        1, description="Deliver the same MO this many times (an SMSC redelivering it)."
    )


class CallIn(_In):
    caller: Msisdn = Field(alias="from")
    called: Number = Field(alias="to")
    operator: OperatorId | None = None


class ChargeIn(_In):
    operator: OperatorId
    msisdn: Msisdn
    amount: Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?$", examples=["2.40"])]
    currency: Annotated[str, Field(min_length=3, max_length=3)]
    reference: Annotated[str, Field(min_length=1, max_length=128)]


class BalanceIn(_In):
    balance: Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?$")] | None = Field(
        None, description="null: unlimited"
    )
    currency: Annotated[str, Field(min_length=3, max_length=3)] | None = None


class FaultIn(_In):
    scenario: str
    operator: OperatorId | None = None
    params: dict[str, Any] = {}


class DlrIn(_In):
    delay_ms: Annotated[int, Field(ge=0, le=3_600_000)] | None = None
    outcome: str | None = Field(None, description=" | ".join(RECEIPT_STATES))
    error_code: Annotated[int, Field(ge=0, le=999)] | None = None
    before_resp: bool | None = None
    operator: OperatorId | None = None


def _error(status: int, code: str, detail: str) -> JSONResponse:
    return problem_response(status, HTTPStatus(status).phrase, detail, error=code)


def _failure(exc: SimulatorError) -> JSONResponse:
    return _error(exc.http_status, exc.code, exc.detail)


def _dlr_json(settings: DlrSettings) -> dict[str, Any]:
    return {
        "delay_ms": settings.delay_ms,
        "outcome": settings.outcome,
        "error_code": settings.error_code,
        "before_resp": settings.before_resp,
    }


def build_router(sim: Simulator) -> APIRouter:
    router = APIRouter(prefix="/sim", tags=["simulator"])

    @router.post("/mo")
    async def post_mo(body: MoIn) -> Any:
        try:
            result = await sim.inject_mo(
                body.msisdn,
                body.short_number,
                body.text,
                body.operator,
                wait=body.wait,
                ack_timeout=body.timeout_ms / 1000,
                copies=body.copies,
            )
        except SimulatorError as exc:
            return _failure(exc)
        status = 502 if result.status == "refused" else 200
        return JSONResponse(result.to_json(), status_code=status)

    @router.get("/inbox/{msisdn}")
    async def get_inbox(msisdn: str) -> list[dict[str, Any]]:
        return [message.to_json() for message in sim.inbox(msisdn)]

    @router.delete("/inbox/{msisdn}")
    async def delete_inbox(msisdn: str) -> dict[str, int]:
        handset = sim.state.handsets.find(msisdn)
        removed = len(handset.inbox) if handset else 0
        if handset:
            handset.inbox.clear()
        return {"removed": removed}

    @router.post("/calls")
    async def post_call(body: CallIn) -> Any:
        try:
            event, outcome = await sim.place_call(body.caller, body.called, body.operator)
        except SimulatorError as exc:
            return _failure(exc)
        except CallForwardingError as exc:
            return _error(502, "gateway_unreachable", str(exc))
        answer = {
            **event.to_json(),
            "operator": event.operator,
            "status": "forwarded" if outcome.accepted else "refused",
            "gateway_status": outcome.status_code,
            "gateway_response": outcome.body,
        }
        return JSONResponse(answer, status_code=200 if outcome.accepted else 502)

    @router.post("/charges")
    async def post_charge(body: ChargeIn) -> Any:
        try:
            currency = money.currency_code(body.currency)
            amount = money.parse_amount(body.amount, currency)
        except money.MoneyError as exc:
            return _error(422, "invalid_amount", str(exc))
        try:
            charge, repeat = sim.charge(
                operator=body.operator,
                msisdn=body.msisdn,
                amount_minor=amount,
                currency=currency,
                reference=body.reference,
            )
        except SimulatorError as exc:
            return _failure(exc)
        return charge.to_json(duplicate=repeat)

    @router.get("/handsets/{msisdn}")
    async def get_handset(msisdn: str) -> dict[str, Any]:
        return sim.handset(msisdn).to_json()

    @router.put("/handsets/{msisdn}")
    async def put_handset(msisdn: str, body: BalanceIn) -> Any:
        if body.balance is not None and body.currency is None:
            return _error(422, "invalid_amount", "a balance needs its currency")
        try:
            minor = None
            if body.balance is not None and body.currency is not None:
                minor = money.parse_amount(body.balance, body.currency)
            handset = sim.set_balance(msisdn, minor, body.currency)
        except money.MoneyError as exc:
            return _error(422, "invalid_amount", str(exc))
        return handset.to_json()

    @router.get("/faults")
    async def get_faults() -> dict[str, Any]:
        return {
            "active": [fault.to_json() for fault in sim.state.faults.list()],
            "scenarios": {name: (cls.__doc__ or "").strip() for name, cls in SCENARIOS.items()},
        }

    @router.post("/faults", status_code=201)
    async def post_fault(body: FaultIn) -> Any:
        try:
            fault = sim.add_fault(body.scenario, body.params, body.operator)
        except ScenarioError as exc:
            return _error(422, "invalid_scenario", str(exc))
        except SimulatorError as exc:
            return _failure(exc)
        return fault.to_json()

    @router.delete("/faults")
    async def delete_faults(operator: str | None = None) -> dict[str, int]:
        return {"removed": sim.clear_faults(operator)}

    @router.delete("/faults/{fault_id}")
    async def delete_fault(fault_id: int) -> Any:
        if not sim.state.faults.remove(fault_id):
            return _error(404, "unknown_fault", f"no fault {fault_id} is switched on")
        return {"removed": 1}

    @router.get("/dlr")
    async def get_dlr() -> dict[str, Any]:
        state = sim.state
        return {
            **_dlr_json(state.default_dlr),
            "operators": {op: _dlr_json(s) for op, s in state.operator_dlr.items()},
        }

    @router.post("/dlr")
    async def post_dlr(body: DlrIn) -> Any:
        current = sim.state.dlr_settings(body.operator) if body.operator else sim.state.default_dlr
        changes = body.model_dump(exclude_none=True, exclude={"operator"})
        try:
            settings = DlrSettings(**{**_dlr_json(current), **changes})
            sim.set_dlr(settings, body.operator)
        except ValueError as exc:
            return _error(422, "invalid_dlr", str(exc))
        except SimulatorError as exc:
            return _failure(exc)
        return {**_dlr_json(settings), "operator": body.operator}

    @router.get("/stats")
    async def get_stats() -> dict[str, Any]:
        return sim.stats()

    return router


def build_app(sim: Simulator) -> FastAPI:
    app = FastAPI(
        title="smsgate operator simulator",
        description="Control API of the built-in SMSC simulator.",
        docs_url="/sim/docs",
        openapi_url="/sim/openapi.json",
    )
    app.include_router(build_router(sim))
    # Included in the gateway's app (smsgate demo), the router gets these from the gateway.
    install_problem_handlers(app)
    return app
