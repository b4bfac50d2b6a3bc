"""Operator HTTP intake: MOs, delivery receipts and call events pushed by operators and
telephony systems (Asterisk, FreeSWITCH) that do not speak SMPP.

Each request is answered only after its transaction has committed, so a 200 means the event is
durable; a repeated delivery of the same operator message id is answered 200 again and changes
nothing.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Annotated, Any, Final, TypeVar

from fastapi import APIRouter, Depends, Header, Request
from pydantic import AfterValidator, BaseModel, Field, ValidationError

from smsgate.api.bodies import replayed
from smsgate.api.deps import RuntimeDep, client_ip
from smsgate.api.problems import Problem
from smsgate.domain.delivery import state_from_receipt_word
from smsgate.runtime import Runtime
from smsgate.security import verify_token
from smsgate.services.dlr import IncomingReceipt, receive_receipt
from smsgate.services.mo import IncomingMo, receive_mo
from smsgate.store.models import Operator

router = APIRouter(prefix="/operators", tags=["operator intake"])

MAX_BODY: Final = 16 * 1024
MAX_FIELDS: Final = 32
FORM: Final = ("application/x-www-form-urlencoded", "multipart/form-data")
# As provisioning spells operator ids; anything else cannot name an operator.
_OPERATOR_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# PostgreSQL refuses NUL in text, and no encoding can store an unpaired surrogate (JSON's
# "\ud800" decodes to one): such a value is refused here, not by the database with a 500.
_NOT_TEXT: Final = re.compile("[\x00\ud800-\udfff]")


def _text(value: str) -> str:
    if _NOT_TEXT.search(value):
        raise ValueError("NUL characters and unpaired surrogates are not allowed")
    return value


Text = Annotated[str, AfterValidator(_text)]


class MoIn(BaseModel):
    message_id: Text = Field(min_length=1, max_length=128, description="The operator's id.")
    msisdn: Text = Field(min_length=3, max_length=32, description="Sender, international format.")
    short_number: Text = Field(min_length=1, max_length=32)
    text: Text = Field(default="", max_length=2000)


class DlrIn(BaseModel):
    message_id: Text = Field(min_length=1, max_length=128)
    status: Text = Field(
        min_length=1, max_length=16, description="SMPP receipt word: DELIVRD, UNDELIV, ..."
    )
    error_code: Text = Field(default="", max_length=32)


class CallIn(BaseModel):
    call_id: Text = Field(min_length=1, max_length=128)
    msisdn: Text = Field(min_length=3, max_length=32, alias="from")
    number: Text = Field(min_length=1, max_length=32, alias="to")


class Accepted(BaseModel):
    status: str = "accepted"
    id: int
    duplicate: bool
    routed: bool | None = None
    matched: bool | None = None


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    # Inline: the body is parsed by hand (JSON or form), so FastAPI never adds the model to
    # the document's components and a $ref to it would dangle.
    schema = {"schema": model.model_json_schema()}
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": schema, "application/x-www-form-urlencoded": schema},
        }
    }


M = TypeVar("M", bound=BaseModel)


def _too_large() -> Problem:
    return Problem(413, "Request body too large", f"At most {MAX_BODY} bytes.")


async def _read_body(request: Request) -> bytes:
    """The body, read no further than MAX_BODY: a larger one is refused, not buffered."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise _too_large()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise _too_large()
    return bytes(body)


async def _form(request: Request, body: bytes) -> dict[str, Any]:
    """The fields of a form body (urlencoded or multipart), parsed from the bytes read."""
    # A malformed form raises HTTPException(400), answered as a problem.
    form = await Request(request.scope, replayed(body)).form(max_files=0, max_fields=MAX_FIELDS)
    try:
        return {key: value for key, value in form.items() if isinstance(value, str)}
    finally:
        await form.close()


async def _parse(request: Request, model: type[M]) -> M:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json" and content_type not in FORM:
        raise Problem(
            415, "Unsupported media type", "Send application/json or a form (urlencoded)."
        )
    body = await _read_body(request)
    try:
        if content_type == "application/json":
            data = json.loads(body or b"null")
            if not isinstance(data, dict):
                raise Problem(422, "Invalid request", "The body must be a JSON object.")
        else:
            data = await _form(request, body)
        return model.model_validate(data)
    except ValidationError as error:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in error.errors()]
        raise Problem(
            422, "Invalid request", "The request failed validation.", errors=errors
        ) from None
    except (ValueError, RecursionError):
        # Not JSON, not UTF-8/16/32, nested deeper than the parser goes, or an integer
        # longer than Python converts.
        raise Problem(400, "Malformed body", "The body could not be parsed.") from None


async def _authenticate(
    runtime: Runtime, operator_id: str, secret: str | None, address: str
) -> Operator:
    operator: Operator | None = None
    if _OPERATOR_ID.fullmatch(operator_id):
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


async def _authorized_operator(
    operator_id: str,
    request: Request,
    runtime: RuntimeDep,
    authorization: AuthHeader = None,
    x_operator_secret: SecretHeader = None,
) -> Operator:
    return await _authenticate(
        runtime, operator_id, _secret(authorization, x_operator_secret), client_ip(request)
    )


AuthorizedOperator = Annotated[Operator, Depends(_authorized_operator)]


async def _store_mo(runtime: Runtime, incoming: IncomingMo) -> Accepted:
    """Receive the MO in its own transaction; answer only once it has committed."""
    async with runtime.sessions() as session, session.begin():
        outcome = await receive_mo(
            session, incoming, now=runtime.clock.now(), handlers=runtime.mo_handlers
        )
    runtime.wake_links()
    return Accepted(
        id=outcome.mo_id, duplicate=outcome.duplicate, routed=outcome.service_id is not None
    )


@router.post("/{operator_id}/mo", response_model=Accepted, openapi_extra=_body_schema(MoIn))
async def push_mo(operator: AuthorizedOperator, request: Request, runtime: RuntimeDep) -> Accepted:
    body = await _parse(request, MoIn)
    return await _store_mo(
        runtime,
        IncomingMo(
            operator_id=operator.id,
            operator_message_id=body.message_id,
            short_number=body.short_number,
            msisdn=body.msisdn.lstrip("+"),
            text=body.text,
            details={"via": "http"},
        ),
    )


@router.post("/{operator_id}/dlr", response_model=Accepted, openapi_extra=_body_schema(DlrIn))
async def push_dlr(operator: AuthorizedOperator, request: Request, runtime: RuntimeDep) -> Accepted:
    body = await _parse(request, DlrIn)
    receipt = IncomingReceipt(
        operator_id=operator.id,
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
    operator: AuthorizedOperator, request: Request, runtime: RuntimeDep
) -> Accepted:
    body = await _parse(request, CallIn)
    # Seed 004: an arrived call is recorded as an incoming message with the text "[waitcall]".
    return await _store_mo(
        runtime,
        IncomingMo(
            operator_id=operator.id,
            operator_message_id=f"call:{body.call_id}",
            short_number=body.number,
            msisdn=body.msisdn.lstrip("+"),
            text="[waitcall]",
            kind="call",
            details={"via": "http", "call_id": body.call_id},
        ),
    )
