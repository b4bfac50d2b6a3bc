"""Operator HTTP intake: MOs, delivery receipts and call events pushed by operators and
telephony systems (Asterisk, FreeSWITCH) that do not speak SMPP.

Each request is answered only after its transaction has committed, so a 200 means the event is
durable; a repeated delivery of the same operator message id is answered 200 again and changes
nothing.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel, Field, ValidationError

from smsgate.api.deps import RuntimeDep, client_ip
from smsgate.api.problems import Problem
from smsgate.domain.delivery import state_from_receipt_word
from smsgate.runtime import Runtime
from smsgate.security import verify_token
from smsgate.services.dlr import IncomingReceipt, receive_receipt
from smsgate.services.mo import IncomingMo, receive_mo
from smsgate.store.models import Operator

router = APIRouter(prefix="/operators", tags=["operator intake"])

MAX_BODY = 16 * 1024


class MoIn(BaseModel):
    message_id: str = Field(min_length=1, max_length=128, description="The operator's id.")
    msisdn: str = Field(min_length=3, max_length=32, description="Sender, international format.")
    short_number: str = Field(min_length=1, max_length=32)
    text: str = Field(default="", max_length=2000)


class DlrIn(BaseModel):
    message_id: str = Field(min_length=1, max_length=128)
    status: str = Field(
        min_length=1, max_length=16, description="SMPP receipt word: DELIVRD, UNDELIV, ..."
    )
    error_code: str = Field(default="", max_length=32)


class CallIn(BaseModel):
    call_id: str = Field(min_length=1, max_length=128)
    msisdn: str = Field(min_length=3, max_length=32, alias="from")
    number: str = Field(min_length=1, max_length=32, alias="to")


class Accepted(BaseModel):
    status: str = "accepted"
    id: int
    duplicate: bool
    routed: bool | None = None
    matched: bool | None = None


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": schema, "application/x-www-form-urlencoded": schema},
        }
    }


M = TypeVar("M", bound=BaseModel)


async def _parse(request: Request, model: type[M]) -> M:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise Problem(413, "Request body too large", f"At most {MAX_BODY} bytes.")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if content_type == "application/json":
            data = json.loads(body or b"null")
            if not isinstance(data, dict):
                raise Problem(422, "Invalid request", "The body must be a JSON object.")
        else:
            data = dict((await request.form()).items())
        return model.model_validate(data)
    except (ValueError, UnicodeDecodeError) as error:
        if isinstance(error, ValidationError):
            errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in error.errors()]
            raise Problem(
                422, "Invalid request", "The request failed validation.", errors=errors
            ) from None
        raise Problem(400, "Malformed body", "The body could not be parsed.") from None


async def _authenticate(
    runtime: Runtime, operator_id: str, secret: str | None, address: str
) -> Operator:
    async with runtime.sessions() as session:
        operator = await session.get(Operator, operator_id)
    # The same answer for an unknown operator and a wrong secret: no hint that an id exists.
    expected = operator.intake_secret_hash if operator is not None else None
    if operator is None or not expected or not verify_token(secret or "", expected):
        raise Problem(401, "Unauthorized", "Unknown operator or wrong intake secret.")
    if operator.ip_allowlist and not _allowed(address, operator.ip_allowlist):
        raise Problem(403, "Forbidden", "This address may not push for this operator.")
    return operator


def _allowed(address: str, allowlist: list[Any]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(str(entry), strict=False) for entry in allowlist)


def _secret(authorization: str | None, x_operator_secret: str | None) -> str | None:
    if x_operator_secret:
        return x_operator_secret
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


AuthHeader = Annotated[str | None, Header(description="Bearer <intake secret>")]
SecretHeader = Annotated[str | None, Header(description="The intake secret, as an alternative")]


@router.post("/{operator_id}/mo", response_model=Accepted, openapi_extra=_body_schema(MoIn))
async def push_mo(
    operator_id: str,
    request: Request,
    runtime: RuntimeDep,
    authorization: AuthHeader = None,
    x_operator_secret: SecretHeader = None,
) -> Accepted:
    await _authenticate(
        runtime, operator_id, _secret(authorization, x_operator_secret), client_ip(request)
    )
    body = await _parse(request, MoIn)
    incoming = IncomingMo(
        operator_id=operator_id,
        operator_message_id=body.message_id,
        short_number=body.short_number,
        msisdn=body.msisdn.lstrip("+"),
        text=body.text,
        details={"via": "http"},
    )
    async with runtime.sessions() as session, session.begin():
        outcome = await receive_mo(
            session, incoming, now=runtime.clock.now(), handlers=runtime.mo_handlers
        )
    runtime.wake_links()
    return Accepted(
        id=outcome.mo_id,
        duplicate=outcome.duplicate,
        routed=outcome.service_id is not None,
    )


@router.post("/{operator_id}/dlr", response_model=Accepted, openapi_extra=_body_schema(DlrIn))
async def push_dlr(
    operator_id: str,
    request: Request,
    runtime: RuntimeDep,
    authorization: AuthHeader = None,
    x_operator_secret: SecretHeader = None,
) -> Accepted:
    await _authenticate(
        runtime, operator_id, _secret(authorization, x_operator_secret), client_ip(request)
    )
    body = await _parse(request, DlrIn)
    receipt = IncomingReceipt(
        operator_id=operator_id,
        operator_message_id=body.message_id,
        state=state_from_receipt_word(body.status),
        error_code=body.error_code,
        raw={"via": "http", "status": body.status},
    )
    async with runtime.sessions() as session, session.begin():
        outcome = await receive_receipt(session, receipt, now=runtime.clock.now())
    runtime.wake_workers()
    return Accepted(id=outcome.report_id, duplicate=False, matched=outcome.matched)


@router.post("/{operator_id}/calls", response_model=Accepted, openapi_extra=_body_schema(CallIn))
async def push_call(
    operator_id: str,
    request: Request,
    runtime: RuntimeDep,
    authorization: AuthHeader = None,
    x_operator_secret: SecretHeader = None,
) -> Accepted:
    await _authenticate(
        runtime, operator_id, _secret(authorization, x_operator_secret), client_ip(request)
    )
    body = await _parse(request, CallIn)
    # Seed 004: an arrived call is recorded as an incoming message with the text "[waitcall]".
    incoming = IncomingMo(
        operator_id=operator_id,
        operator_message_id=f"call:{body.call_id}",
        short_number=body.number,
        msisdn=body.msisdn.lstrip("+"),
        text="[waitcall]",
        kind="call",
        details={"via": "http", "call_id": body.call_id},
    )
    async with runtime.sessions() as session, session.begin():
        outcome = await receive_mo(
            session, incoming, now=runtime.clock.now(), handlers=runtime.mo_handlers
        )
    runtime.wake_workers()
    return Accepted(
        id=outcome.mo_id, duplicate=outcome.duplicate, routed=outcome.service_id is not None
    )
