"""The trace of an access-code service: its codes and every check, for the merchant's JSON API
and the control panel. Newest first, paged by id (``before_id``), filtered by time, answer,
status and phone number."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from smsgate.domain import access_codes as rules_
from smsgate.services.code_checks import code_state
from smsgate.store.models import AccessCode, CodeCheck

MAX_PAGE = 500

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CodeFilter:
    since: datetime | None = None  # issued at or after
    until: datetime | None = None  # issued before
    msisdn: str | None = None
    status: str | None = None  # active | expired | used (as of now)
    code: str | None = None


@dataclass(frozen=True, slots=True)
class CheckFilter:
    since: datetime | None = None
    until: datetime | None = None
    answer: str | None = None
    msisdn: str | None = None  # of the code that was found
    code_id: int | None = None


@dataclass(frozen=True, slots=True)
class CodeRow:
    id: int
    code: str
    kind: str
    status: str  # as of now: active | expired | used
    msisdn: str
    mo_id: int | None
    issued_at: datetime
    expires_at: datetime | None
    first_used_at: datetime | None
    uses_left: int | None
    uses_count: int


@dataclass(frozen=True, slots=True)
class CheckRow:
    id: int
    at: datetime
    answer: str
    code_given: str
    code_id: int | None
    msisdn: str | None
    requester_ip: str
    user_ip: str
    via: str


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_before_id: int | None  # pass as before_id for the next (older) page


def _page_limit(limit: int) -> int:
    return max(1, min(limit, MAX_PAGE))


def _digits(msisdn: str) -> str:
    return "".join(c for c in msisdn if c.isdigit())


async def list_codes(
    session: AsyncSession,
    service_id: int,
    flt: CodeFilter,
    *,
    now: datetime,
    limit: int = 100,
    before_id: int | None = None,
) -> Page[CodeRow]:
    limit = _page_limit(limit)
    query: Select[Any] = select(AccessCode).where(AccessCode.service_id == service_id)
    if flt.since is not None:
        query = query.where(AccessCode.issued_at >= flt.since)
    if flt.until is not None:
        query = query.where(AccessCode.issued_at < flt.until)
    if flt.msisdn:
        query = query.where(AccessCode.msisdn == _digits(flt.msisdn))
    if flt.code:
        code = rules_.normalize_code_input(flt.code)
        if not (code.isascii() and code.isalnum()):
            return Page([], None)  # no code has such characters (and NUL never reaches SQL)
        query = query.where(AccessCode.code == code)
    if flt.status == rules_.CodeStatus.USED.value:
        query = query.where(AccessCode.status == flt.status)
    elif flt.status is not None:
        # "active" and "expired" depend on now: narrow in SQL, decide per row below.
        query = query.where(AccessCode.status != rules_.CodeStatus.USED.value)
    if before_id is not None:
        query = query.where(AccessCode.id < before_id)
    items: list[CodeRow] = []
    last_id: int | None = None
    # Rows the status filter drops are skipped; scan a bounded number of pages of them.
    for _ in range(20):
        rows = (await session.scalars(query.order_by(AccessCode.id.desc()).limit(limit))).all()
        for code in rows:
            last_id = code.id
            state = code_state(code)
            status = rules_.code_status(state, now).value
            if flt.status is not None and status != flt.status:
                continue
            items.append(
                CodeRow(
                    id=code.id,
                    code=code.code,
                    kind=code.kind,
                    status=status,
                    msisdn=code.msisdn,
                    mo_id=code.mo_id,
                    issued_at=code.issued_at,
                    expires_at=rules_.expires_at(state),
                    first_used_at=code.first_used_at,
                    uses_left=code.uses_left,
                    uses_count=code.uses_count,
                )
            )
            if len(items) == limit:
                return Page(items, code.id)
        if len(rows) < limit or last_id is None:
            return Page(items, None)
        query = query.where(AccessCode.id < last_id)
    return Page(items, last_id)


async def list_checks(
    session: AsyncSession,
    service_id: int,
    flt: CheckFilter,
    *,
    limit: int = 100,
    before_id: int | None = None,
) -> Page[CheckRow]:
    limit = _page_limit(limit)
    query = (
        select(CodeCheck, AccessCode.msisdn)
        .outerjoin(AccessCode, AccessCode.id == CodeCheck.code_id)
        .where(CodeCheck.service_id == service_id)
    )
    if flt.since is not None:
        query = query.where(CodeCheck.at >= flt.since)
    if flt.until is not None:
        query = query.where(CodeCheck.at < flt.until)
    if flt.answer:
        query = query.where(CodeCheck.answer == flt.answer)
    if flt.msisdn:
        query = query.where(AccessCode.msisdn == _digits(flt.msisdn))
    if flt.code_id is not None:
        query = query.where(CodeCheck.code_id == flt.code_id)
    if before_id is not None:
        query = query.where(CodeCheck.id < before_id)
    rows = (await session.execute(query.order_by(CodeCheck.id.desc()).limit(limit))).all()
    items = [
        CheckRow(
            id=check.id,
            at=check.at,
            answer=check.answer,
            code_given=check.code_given,
            code_id=check.code_id,
            msisdn=msisdn,
            requester_ip=check.requester_ip,
            user_ip=check.user_ip,
            via=check.via,
        )
        for check, msisdn in rows
    ]
    return Page(items, items[-1].id if len(items) == limit else None)
