"""The JSON REST twin of send_bulk.php: ``/api/v1/messages`` (one or up to 1000 recipients,
``Idempotency-Key``), ``/api/v1/messages/{id}`` with its DLR history, and the opt-out list of
a bulk service. Merchants authenticate with their API key; every refusal is an RFC 9457
problem whose ``code`` is the send_bulk.php word for the same refusal (docs/bulk.md).
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import select

from smsgate.api.deps import client_ip
from smsgate.api.problems import Problem, problem_response
from smsgate.domain.errors import InvalidMsisdn
from smsgate.domain.money import format_amount
from smsgate.domain.msisdn import normalize_msisdn
from smsgate.runtime import Runtime
from smsgate.security import hash_api_key
from smsgate.services import optouts
from smsgate.services.bans import BanList, BanPolicy, make_storage
from smsgate.services.bulk import (
    Accepted,
    BulkRequest,
    Refusal,
    Refused,
    SendResult,
)
from smsgate.services.bulk_messages import MessageView, load_message
from smsgate.services.bulk_queue import accept_queue
from smsgate.store.models import Merchant, Service

router = APIRouter()


async def _runtime(request: Request) -> Runtime:
    # An async dependency: FastAPI runs a plain ``def`` one in its thread pool, a thread
    # hand-over per request that costs more than the rest of a bulk send's HTTP handling.
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(_runtime)]

BAN_SCOPE: Final = "send_bulk"
MAX_TEXT_CHARS: Final = 40_000  # 255 parts of 153 septets, and some room
MAX_RECIPIENTS: Final = 1000
MAX_ID: Final = 2**63 - 1

# --- bans ------------------------------------------------------------------------------------


def bulk_bans(app: Any, runtime: Runtime) -> BanList:
    """The app's ban list of the bulk endpoints, made on first use."""
    bans: BanList | None = getattr(app.state, "bulk_bans", None)
    if bans is None:
        bans = BanList(make_storage(runtime.settings.redis_url), namespace="bulk")
        app.state.bulk_bans = bans
    return bans


# Failures that count towards a ban: guessing services and sending from foreign addresses.
BAN_FAILURES: Final = frozenset(
    {Refusal.INVALID_INPUT, Refusal.UNKNOWN_SERVICE, Refusal.IP_NOT_ALLOWED}
)
BAN_POLICY: Final = BanPolicy()


# --- REST: authentication --------------------------------------------------------------------


KEY_MEMORY_SECONDS: Final = 1.0
KEY_MEMORY_SIZE: Final = 10_000


class KeyOwners:
    """Which merchant an API key belongs to, remembered for ``KEY_MEMORY_SECONDS``: a lookup
    costs a transaction (on SQLite one that takes the write lock, store/db.py), several times
    the rest of a send. Only keys found are remembered, so a new key works at once; a key
    revoked or moved is honoured at most that long after (the merchant's status is checked
    with every message anyway)."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[int, float]] = {}

    async def merchant_of(self, runtime: Runtime, key: str) -> int | None:
        digest = hash_api_key(key)
        now = time.monotonic()
        known = self._known.get(digest)
        if known is not None and now - known[1] < KEY_MEMORY_SECONDS:
            return known[0]
        async with runtime.read_sessions() as session:
            found = await session.scalar(select(Merchant.id).where(Merchant.api_key_hash == digest))
        if found is None:
            self._known.pop(digest, None)
            return None
        if len(self._known) >= KEY_MEMORY_SIZE:
            self._known.clear()
        self._known[digest] = (int(found), now)
        return int(found)


async def _merchant_id(
    request: Request,
    runtime: RuntimeDep,
    authorization: Annotated[str | None, Header(description="Bearer <API key>")] = None,
    x_api_key: Annotated[str | None, Header(description="The API key, as an alternative")] = None,
) -> int:
    key = x_api_key
    if key is None and authorization and authorization.lower().startswith("bearer "):
        key = authorization[7:].strip()
    if not key:
        raise Problem(401, "Unauthorized", "Give the merchant's API key: Authorization: Bearer.")
    owners: KeyOwners | None = getattr(request.app.state, "bulk_key_owners", None)
    if owners is None:
        owners = request.app.state.bulk_key_owners = KeyOwners()
    found = await owners.merchant_of(runtime, key)
    if found is None:
        raise Problem(401, "Unauthorized", "Unknown API key.")
    return found


MerchantId = Annotated[int, Depends(_merchant_id)]


# --- REST: problems --------------------------------------------------------------------------

PROBLEM_BASE: Final = "urn:smsgate:problem:"

_STATUS: Final = {
    Refusal.BANNED: 403,
    Refusal.INVALID_INPUT: 422,
    Refusal.UNKNOWN_SERVICE: 404,
    Refusal.IP_NOT_ALLOWED: 403,
    Refusal.SERVICE_DISABLED: 403,
    Refusal.INVALID_MSISDN: 422,
    Refusal.OPTED_OUT: 422,
    Refusal.NO_ROUTE: 422,
    Refusal.TOO_LONG: 422,
    Refusal.PATTERN: 422,
    Refusal.LIMIT_DAY: 429,
    Refusal.LIMIT_WEEK: 429,
    Refusal.LIMIT_MONTH: 429,
    Refusal.LIMIT_DELAY: 429,
    Refusal.NO_FUNDS: 402,
}
_TITLES: Final = {
    Refusal.BANNED: "Address temporarily banned",
    Refusal.INVALID_INPUT: "Invalid input",
    Refusal.UNKNOWN_SERVICE: "Unknown service",
    Refusal.IP_NOT_ALLOWED: "Address not allowed",
    Refusal.SERVICE_DISABLED: "Service disabled",
    Refusal.INVALID_MSISDN: "Invalid recipient number",
    Refusal.OPTED_OUT: "Recipient opted out",
    Refusal.NO_ROUTE: "No route to the recipient",
    Refusal.TOO_LONG: "Text too long",
    Refusal.PATTERN: "Text not approved",
    Refusal.LIMIT_DAY: "Daily limit reached",
    Refusal.LIMIT_WEEK: "Weekly limit reached",
    Refusal.LIMIT_MONTH: "Monthly limit reached",
    Refusal.LIMIT_DELAY: "Minimum interval not passed",
    Refusal.NO_FUNDS: "Insufficient funds",
}


class ProblemOut(BaseModel):
    """RFC 9457 problem details, with the seed's status word as ``code``."""

    type: str = Field(examples=["urn:smsgate:problem:opted-out"])
    title: str
    status: int
    detail: str = ""
    code: str = Field("", description="The send_bulk.php word for the same refusal, if any.")
    retry_at: datetime | None = Field(
        default=None, description="Limits: when the same message could be accepted."
    )


def _problem_out(refused: Refused) -> ProblemOut:
    return ProblemOut(
        type=PROBLEM_BASE + refused.reason.value,
        title=_TITLES[refused.reason],
        status=_STATUS[refused.reason],
        detail=refused.detail,
        code=refused.word,
        retry_at=refused.retry_at,
    )


def _raise(refused: Refused) -> Problem:
    out = _problem_out(refused)
    return Problem(out.status, out.title, out.detail, type=out.type, code=out.code)


def _refusal_response(refused: Refused, now: datetime) -> JSONResponse:
    """The problem for one refused recipient; limits say when to retry (RFC 9110 §10.2.3)."""
    out = _problem_out(refused)
    extra: dict[str, str] = {"type": out.type, "code": out.code}
    if out.retry_at is not None:
        extra["retry_at"] = out.retry_at.isoformat()
    response = problem_response(out.status, out.title, out.detail, **extra)
    if refused.retry_at is not None:
        seconds = max(0, math.ceil((refused.retry_at - now).total_seconds()))
        response.headers["Retry-After"] = str(seconds)
    return response


# --- REST: messages --------------------------------------------------------------------------


class SendIn(BaseModel):
    service_id: int = Field(ge=1, le=MAX_ID, examples=[201])
    to: Annotated[
        str | Annotated[list[str], Field(min_length=1, max_length=MAX_RECIPIENTS)],
        Field(
            description="One number, or a list of up to 1000, in international format.",
            examples=["359881234567"],
        ),
    ]
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)


class MessageOut(BaseModel):
    id: int = Field(description="The message id (what DLR callbacks carry).")
    msisdn: str
    status: Literal["queued"] = "queued"
    parts: int
    encoding: str
    cost: str = Field(description="What the merchant was charged, decimal.", examples=["0.10"])
    currency: str
    duplicate: bool = Field(
        default=False, description="An earlier request with this Idempotency-Key sent it."
    )


class RecipientOut(BaseModel):
    msisdn: str = Field(description="As given in the request.")
    accepted: bool
    message: MessageOut | None = None
    error: ProblemOut | None = None


class BatchOut(BaseModel):
    accepted: int
    refused: int
    results: list[RecipientOut]


def _message_out(accepted: Accepted) -> MessageOut:
    return MessageOut(
        id=accepted.mt_id,
        msisdn=accepted.msisdn,
        parts=accepted.parts,
        encoding=accepted.encoding,
        cost=format_amount(accepted.cost_minor, accepted.currency) if accepted.currency else "0",
        currency=accepted.currency,
        duplicate=accepted.duplicate,
    )


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=100,
        description="Repeating a request with the same key sends nothing twice.",
    ),
]


@router.post(
    "/api/v1/messages",
    tags=["messages"],
    status_code=201,
    response_model=MessageOut | BatchOut,
    summary="Send a message to one or up to 1000 recipients",
    responses={
        201: {"description": "One recipient (`to` a string): the queued message."},
        200: {"description": "A list of recipients: one result per recipient, in order."},
        402: {"model": ProblemOut, "description": "The merchant cannot pay (one recipient)."},
        403: {"model": ProblemOut},
        404: {"model": ProblemOut},
        422: {"model": ProblemOut},
        429: {"model": ProblemOut},
    },
)
async def post_message(
    body: SendIn,
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    merchant_id: MerchantId,
    idempotency_key: IdempotencyKey = None,
) -> MessageOut | BatchOut | JSONResponse:
    now = runtime.clock.now()
    address = client_ip(request)
    if await bulk_bans(request.app, runtime).is_banned(BAN_SCOPE, address, BAN_POLICY, now):
        raise _raise(Refused(Refusal.BANNED, "Too many failed requests from this address."))

    def make(msisdn: str, key: str | None) -> BulkRequest:
        return BulkRequest(
            service_id=body.service_id,
            user_id=merchant_id,
            msisdn=msisdn,
            text=body.text,
            client_ip=address,
            idempotency_key=key,
            via="rest",
        )

    if isinstance(body.to, str):
        result = await accept_queue(runtime.sessions).send(make(body.to, idempotency_key), now=now)
        if isinstance(result, Refused):
            return _refusal_response(result, now)
        runtime.wake_links()
        if result.duplicate:
            response.status_code = 200
        return _message_out(result)
    requests = [
        make(msisdn, f"{idempotency_key}:{index}" if idempotency_key else None)
        for index, msisdn in enumerate(body.to)
    ]
    results = await accept_queue(runtime.sessions).send_all(requests, now=now)
    if any(isinstance(r, Accepted) for r in results):
        runtime.wake_links()
    response.status_code = 200
    return BatchOut(
        accepted=sum(isinstance(r, Accepted) for r in results),
        refused=sum(isinstance(r, Refused) for r in results),
        results=[_recipient_out(msisdn, r) for msisdn, r in zip(body.to, results, strict=True)],
    )


def _recipient_out(msisdn: str, result: SendResult) -> RecipientOut:
    if isinstance(result, Accepted):
        return RecipientOut(msisdn=msisdn, accepted=True, message=_message_out(result))
    return RecipientOut(msisdn=msisdn, accepted=False, error=_problem_out(result))


class PartOut(BaseModel):
    part: int
    status: str
    error_code: str
    operator_message_id: str | None
    submitted_at: datetime | None
    done_at: datetime | None


class ReportOut(BaseModel):
    part: int = Field(description="The part the report is about (0: not matched to a part).")
    status: str
    error_code: str = Field(description="The operator's error code, as received.")
    received_at: datetime


class MessageDetailOut(BaseModel):
    id: int
    service_id: int | None
    msisdn: str
    sender: str
    text: str
    encoding: str
    parts: int
    status: str = Field(
        description="queued, submitting, submitted, accepted, enroute, delivered, "
        "undelivered, expired, rejected, failed or unknown"
    )
    error_code: str
    cost: str
    currency: str
    created_at: datetime
    updated_at: datetime
    part_states: list[PartOut]
    dlr_history: list[ReportOut]


def _detail_out(view: MessageView) -> MessageDetailOut:
    return MessageDetailOut(
        id=view.id,
        service_id=view.service_id,
        msisdn=view.msisdn,
        sender=view.sender,
        text=view.text,
        encoding=view.encoding,
        parts=view.parts,
        status=view.status,
        error_code=view.error_code,
        cost=format_amount(view.cost_minor, view.currency) if view.currency else "0",
        currency=view.currency,
        created_at=view.created_at,
        updated_at=view.updated_at,
        part_states=[
            PartOut(
                part=p.part_no,
                status=p.status,
                error_code=p.error_code,
                operator_message_id=p.operator_message_id,
                submitted_at=p.submitted_at,
                done_at=p.done_at,
            )
            for p in view.part_states
        ],
        dlr_history=[
            ReportOut(
                part=r.part_no, status=r.state, error_code=r.error_code, received_at=r.received_at
            )
            for r in view.reports
        ],
    )


@router.get(
    "/api/v1/messages/{message_id}",
    tags=["messages"],
    response_model=MessageDetailOut,
    summary="A message, its parts and its delivery reports",
    responses={404: {"model": ProblemOut}},
)
async def get_message(
    message_id: Annotated[int, Path(ge=1, le=MAX_ID)], runtime: RuntimeDep, merchant_id: MerchantId
) -> MessageDetailOut:
    async with runtime.read_sessions() as session:
        view = await load_message(session, message_id, merchant_id=merchant_id)
    if view is None:
        raise Problem(404, "Not found", "No such message for this merchant.")
    return _detail_out(view)


# --- REST: opt-outs --------------------------------------------------------------------------


class OptOutIn(BaseModel):
    msisdn: str = Field(min_length=1, max_length=64, examples=["359881234567"])


class OptOutOut(BaseModel):
    msisdn: str
    reason: str = Field(description="stop_mo (the subscriber sent STOP) or merchant")
    at: datetime


class OptOutList(BaseModel):
    items: list[OptOutOut]
    next_after: str | None = Field(description="Pass as `after` for the next page.")


async def _own_bulk_service(runtime: Runtime, service_id: int, merchant_id: int) -> None:
    if not 0 < service_id <= MAX_ID:  # beyond BIGINT: no such service, not a database error
        raise Problem(404, "Unknown service", "No such bulk service for this merchant.")
    async with runtime.read_sessions() as session:
        found = await session.scalar(
            select(Service.id).where(
                Service.id == service_id,
                Service.merchant_id == merchant_id,
                Service.type == "bulk",
            )
        )
    if found is None:
        raise Problem(404, "Unknown service", "No such bulk service for this merchant.")


def _canonical(msisdn: str) -> str:
    try:
        return normalize_msisdn(msisdn).digits
    except InvalidMsisdn as error:
        raise _raise(Refused(Refusal.INVALID_MSISDN, str(error))) from None


@router.post(
    "/api/v1/services/{service_id}/opt-outs",
    tags=["opt-outs"],
    status_code=201,
    response_model=OptOutOut,
    summary="Add a number to the service's opt-out list",
    responses={200: {"description": "The number was already listed."}},
)
async def add_opt_out(
    service_id: int,
    body: OptOutIn,
    response: Response,
    runtime: RuntimeDep,
    merchant_id: MerchantId,
) -> OptOutOut:
    await _own_bulk_service(runtime, service_id, merchant_id)
    msisdn = _canonical(body.msisdn)
    now = runtime.clock.now()
    async with runtime.sessions() as session, session.begin():
        added = await optouts.add_opt_out(
            session, service_id, msisdn, reason=optouts.BY_MERCHANT, now=now
        )
        entry = await optouts.get_opt_out(session, service_id, msisdn)
    assert entry is not None
    if not added:
        response.status_code = 200
    return OptOutOut(msisdn=entry.msisdn, reason=entry.reason, at=entry.at)


@router.delete(
    "/api/v1/services/{service_id}/opt-outs/{msisdn}",
    tags=["opt-outs"],
    status_code=204,
    summary="Take a number off the service's opt-out list",
    responses={404: {"model": ProblemOut}},
)
async def remove_opt_out(
    service_id: int, msisdn: str, runtime: RuntimeDep, merchant_id: MerchantId
) -> Response:
    await _own_bulk_service(runtime, service_id, merchant_id)
    digits = _canonical(msisdn)
    async with runtime.sessions() as session, session.begin():
        removed = await optouts.remove_opt_out(session, service_id, digits)
    if not removed:
        raise Problem(404, "Not found", "The number is not on the list.")
    return Response(status_code=204)


@router.get(
    "/api/v1/services/{service_id}/opt-outs",
    tags=["opt-outs"],
    response_model=OptOutList,
    summary="The service's opt-out list, by number",
)
async def list_opt_outs(
    service_id: int,
    runtime: RuntimeDep,
    merchant_id: MerchantId,
    after: Annotated[str, Query(max_length=32)] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> OptOutList:
    await _own_bulk_service(runtime, service_id, merchant_id)
    async with runtime.read_sessions() as session:
        entries = await optouts.list_opt_outs(session, service_id, limit=limit, after=after)
    items = [OptOutOut(msisdn=e.msisdn, reason=e.reason, at=e.at) for e in entries]
    return OptOutList(items=items, next_after=items[-1].msisdn if len(items) == limit else None)
