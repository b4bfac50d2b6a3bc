"""Checking an access code (seed 000 ``check_code.php``, the JSON API and the hosted page).

The order of checks (docs/access_codes.md, "Order of checks"); the first that applies answers:

1. ``INVALID_INPUT``: a parameter is missing, repeated or malformed (decided by the caller,
   which records it through :meth:`CodeChecker.record_invalid_input`);
2. ``INVALID_INPUT``: no access-code service with this ``service_id`` belongs to ``user_id``
   (an unknown pair, another merchant's service, a service of another type: one answer, so
   nobody learns which services exist);
3. ``BAN_IP_TEMP``: the requesting address is banned on this service;
4. ``INVALID_IP``: the service has an allowlist and the address is not on it (a failure);
5. ``SERVICE_DISABLED``;
6. ``CODE_NOT_FOUND``: no such code in this service (a failure);
7. ``CODE_EXPIRED``: out of time, or out of uses;
8. ``CODE_OK``: and the check is a use of the code.

Failures (4 and 6) count towards a ban of the requesting address (services/bans.py).

The path is kept short because sites call it on every page view: the service is read from a
cache that lives ``cache_seconds`` (changes to a service reach every process within that
time), then one lookup by the unique (service, code) index, at most one conditional UPDATE
(the use) and one INSERT of the check row. The UPDATE carries the condition that makes it
safe under concurrency: ``uses_left > 0`` (of N concurrent checks of a one-use code exactly
one gets ``CODE_OK``), and ``COALESCE`` for the start of a first-use period (concurrent first
uses agree on the one that committed first).
"""

from __future__ import annotations

import asyncio
import logging
import time
import unicodedata
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Concatenate, Final, ParamSpec, TypeVar

from sqlalchemy import (
    URL,
    BigInteger,
    Connection,
    Insert,
    String,
    and_,
    bindparam,
    case,
    create_engine,
    event,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import SingletonThreadPool

from smsgate.domain import access_codes as rules_
from smsgate.domain.access_codes import CheckOutcome, CodeKind, CodeRules, CodeState
from smsgate.domain.clock import Clock
from smsgate.services.access_code_settings import (
    AccessCodeConfig,
    Allowlist,
    MisconfiguredService,
    read_config,
)
from smsgate.services.bans import BanList
from smsgate.store.models import AccessCode, CodeCheck, Service
from smsgate.store.types import UTCDateTime

log = logging.getLogger(__name__)


class CheckAnswer(StrEnum):
    """The seven words of seed 000; nothing else is ever answered."""

    BAN_IP_TEMP = "BAN_IP_TEMP"
    INVALID_IP = "INVALID_IP"
    INVALID_INPUT = "INVALID_INPUT"
    SERVICE_DISABLED = "SERVICE_DISABLED"
    CODE_NOT_FOUND = "CODE_NOT_FOUND"
    CODE_EXPIRED = "CODE_EXPIRED"
    CODE_OK = "CODE_OK"


# Answers that count towards a ban of the requesting address.
FAILURES: Final = frozenset({CheckAnswer.INVALID_IP, CheckAnswer.CODE_NOT_FOUND})

MAX_CODE_INPUT: Final = 64  # code_checks.code_given; longer input is INVALID_INPUT
TRACE_FIELD: Final = 64  # code_checks.requester_ip / user_ip
SERVICE_TYPE: Final = "access_code"


def printable(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters without control characters (PostgreSQL refuses
    NUL in text, and a trace shown in the panel has no use for the others)."""
    kept = "".join(c for c in text if unicodedata.category(c)[0] != "C")
    return kept[:limit]


@dataclass(frozen=True, slots=True)
class CheckRequest:
    service_id: int
    code: str  # as given; normalised here
    requester_ip: str  # the address the request came from (bans, allowlist)
    user_id: int | None = None  # None: the caller has authenticated the merchant already
    user_ip: str = ""  # the end user's address, for the trace only
    via: str = "legacy"  # legacy | rest | hosted
    # The allowlist names the merchant's servers; the hosted page is asked by browsers.
    apply_allowlist: bool = True


@dataclass(frozen=True, slots=True)
class CheckResult:
    answer: CheckAnswer
    service_id: int | None = None
    code_id: int | None = None
    # The code's terms after this check (CODE_OK / CODE_EXPIRED only).
    expires_at: datetime | None = None
    uses_left: int | None = None


@dataclass(frozen=True, slots=True)
class ServiceView:
    """What a check needs of a service, cached briefly."""

    id: int
    merchant_id: int
    type: str
    keyword: str
    status: str
    allowlist: Allowlist
    config: AccessCodeConfig | None  # None: the stored settings are unusable
    signing_secret: str


class ServiceCache:
    """Services by id for ``ttl`` seconds of the monotonic clock, unknown ids included (so a
    flood of made-up ids does not reach the database either); at most ``max_entries``."""

    def __init__(self, engine: AsyncEngine, ttl: float, max_entries: int = 10_000) -> None:
        self.engine = engine
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[int, tuple[float, ServiceView | None]] = {}

    async def get(self, service_id: int) -> ServiceView | None:
        now = time.monotonic()
        cached = self._entries.get(service_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        view = await load_service(self.engine, service_id)
        if self.ttl > 0:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[service_id] = (now + self.ttl, view)
        return view

    def forget(self, service_id: int | None = None) -> None:
        if service_id is None:
            self._entries.clear()
        else:
            self._entries.pop(service_id, None)


async def load_service(engine: AsyncEngine, service_id: int) -> ServiceView | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(
                    Service.id,
                    Service.merchant_id,
                    Service.type,
                    Service.keyword,
                    Service.status,
                    Service.ip_allowlist,
                    Service.settings,
                    Service.signing_secret,
                ).where(Service.id == service_id)
            )
        ).one_or_none()
    if row is None:
        return None
    config: AccessCodeConfig | None = None
    if row.type == SERVICE_TYPE:
        try:
            config = read_config(row.settings or {})
        except MisconfiguredService:
            log.error("service %s has unusable access-code settings", row.id, exc_info=True)
    return ServiceView(
        id=row.id,
        merchant_id=row.merchant_id,
        type=row.type,
        keyword=row.keyword,
        status=row.status,
        allowlist=Allowlist.parse(row.ip_allowlist or []),
        config=config,
        signing_secret=row.signing_secret,
    )


_CODE_COLUMNS = (
    AccessCode.id,
    AccessCode.kind,
    AccessCode.issued_at,
    AccessCode.valid_until,
    AccessCode.lifetime_until,
    AccessCode.first_used_at,
    AccessCode.uses_left,
    AccessCode.uses_count,
    AccessCode.period_seconds,
)


# The statements of the check path, built once (building them per check cost more CPU than
# running them); values come in as bind parameters.
_FIND_CODE = select(*_CODE_COLUMNS).where(
    AccessCode.service_id == bindparam("service_id"), AccessCode.code == bindparam("code")
)
_USES = CodeKind.USES.value
# One use of a code the check found valid, whatever its kind; the row's own columns decide.
# - uses: the WHERE guard (uses_left > 0) is what makes N concurrent checks of a one-use code
#   give exactly one CODE_OK: a check that lost the race matches no row (CODE_EXPIRED).
# - period_from_first_use: COALESCE keeps the period of whichever first use committed first,
#   so concurrent first uses agree on one period without a retry.
_USE = (
    update(AccessCode)
    .where(
        AccessCode.id == bindparam("code_id"),
        or_(AccessCode.kind != _USES, AccessCode.uses_left > 0),
    )
    .values(
        uses_count=AccessCode.uses_count + 1,
        first_used_at=func.coalesce(
            AccessCode.first_used_at, bindparam("now", type_=UTCDateTime())
        ),
        valid_until=case(
            (
                AccessCode.kind == CodeKind.PERIOD_FROM_FIRST_USE.value,
                func.coalesce(
                    AccessCode.valid_until, bindparam("new_valid_until", type_=UTCDateTime())
                ),
            ),
            else_=AccessCode.valid_until,
        ),
        uses_left=case(
            (AccessCode.kind == _USES, AccessCode.uses_left - 1), else_=AccessCode.uses_left
        ),
        status=case(
            (
                and_(AccessCode.kind == _USES, AccessCode.uses_left <= 1),
                rules_.CodeStatus.USED.value,
            ),
            else_=AccessCode.status,
        ),
    )
    .returning(AccessCode.uses_left, AccessCode.valid_until)
)
_INSERT_CHECK = insert(CodeCheck)
_CHECK_COLUMNS = (
    "service_id",
    "code_id",
    "code_given",
    "at",
    "requester_ip",
    "user_ip",
    "answer",
    "via",
)


def _use_and_record() -> Insert:
    """PostgreSQL: the use and the check row in one statement (a data-modifying CTE), so a
    check is two round trips in autocommit (find, then use and record) instead of five."""
    used = _USE.cte("used")
    answer = case(
        (exists(select(literal(1)).select_from(used)), CheckAnswer.CODE_OK.value),
        else_=CheckAnswer.CODE_EXPIRED.value,
    )
    # The check row's values are named check_*: a parameter named like a column of
    # access_codes would be taken as one more SET of the UPDATE.
    row = select(
        bindparam("check_service_id", type_=BigInteger()),
        bindparam("code_id", type_=BigInteger()),
        bindparam("check_code_given", type_=String()),
        bindparam("check_at", type_=UTCDateTime()),
        bindparam("check_requester_ip", type_=String()),
        bindparam("check_user_ip", type_=String()),
        answer,
        bindparam("check_via", type_=String()),
    )
    return (
        insert(CodeCheck)
        .from_select(_CHECK_COLUMNS, row)
        .add_cte(used)
        .returning(
            CodeCheck.answer,
            select(used.c.uses_left).scalar_subquery().label("uses_left"),
            select(used.c.valid_until).scalar_subquery().label("valid_until"),
        )
    )


_USE_AND_RECORD = _use_and_record()


def code_state(row: Any) -> CodeState:
    return CodeState(
        kind=CodeKind(row.kind),
        issued_at=row.issued_at,
        valid_until=row.valid_until,
        lifetime_until=row.lifetime_until,
        first_used_at=row.first_used_at,
        uses_left=row.uses_left,
        uses_count=row.uses_count,
    )


def terms_of(row: Any) -> CodeRules:
    """The rules a stored code was sold under, as far as a use needs them: a first-use code
    keeps the period it was issued with (``period_seconds``)."""
    kind = CodeKind(row.kind)
    if kind is CodeKind.USES:
        return CodeRules(kind=kind, uses=max(1, row.uses_left or 1))
    return CodeRules(kind=kind, validity=timedelta(seconds=max(1, row.period_seconds or 1)))


class CodeChecker:
    """Answers checks for one gateway process: the service cache and the ban list are its
    own; everything that must be shared lives in the database and the ban storage.

    The database work of a check is one synchronous function (:meth:`_transaction`):

    - On PostgreSQL it runs through ``AsyncConnection.run_sync`` in autocommit, as two
      statements: the lookup, then the use and the check row together (one statement with
      a data-modifying CTE, atomic on its own). Two round trips instead of five (BEGIN,
      SELECT, UPDATE, INSERT, COMMIT).
    - On SQLite it runs in one transaction in a thread of its own, on a connection of its
      own: aiosqlite hands every cursor, execute, fetch and commit to its thread separately
      (some 16 hand-overs for one check, each paying for the GIL), where this pays once. The
      one thread also queues SQLite's single writer here instead of in SQLite's busy
      handler, which sleeps in steps of up to 100 ms.
    """

    def __init__(
        self, engine: AsyncEngine, clock: Clock, bans: BanList, *, cache_seconds: float = 1.0
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.bans = bans
        self.services = ServiceCache(engine, cache_seconds)
        self._sqlite: SqliteThread | None = None
        self._pg: AsyncEngine | None = None
        self._combined = engine.dialect.name == "postgresql"
        if engine.dialect.name == "sqlite":
            self._sqlite = SqliteThread(engine.url)
        else:
            self._pg = engine

    async def service_for(self, service_id: int, user_id: int | None) -> ServiceView | None:
        """The access-code service ``service_id`` of merchant ``user_id`` (any merchant when
        None), or None: unknown, another merchant's, or another type."""
        view = await self.services.get(service_id)
        if view is None or view.type != SERVICE_TYPE:
            return None
        if user_id is not None and view.merchant_id != user_id:
            return None
        return view

    async def check(self, request: CheckRequest) -> CheckResult:
        view = await self.service_for(request.service_id, request.user_id)
        now = self.clock.now()
        answer = await self._answer_before_lookup(request, view, now)
        code = rules_.normalize_code_input(request.code)
        if answer is None:
            if not code:
                answer = CheckAnswer.INVALID_INPUT
            elif len(code) > rules_.MAX_CODE_LENGTH or not (code.isascii() and code.isalnum()):
                # Codes are drawn from ASCII letters and digits: anything else is no code (and
                # never reaches the database, which may refuse some characters, such as NUL).
                answer = CheckAnswer.CODE_NOT_FOUND
        result = await self._run(request, view, code if answer is None else None, answer, now)
        await self._count_failure(request, view, result, now)
        return result

    async def record_invalid_input(
        self, *, code_given: str, requester_ip: str, user_ip: str = "", via: str = "legacy"
    ) -> CheckResult:
        """Keep the trace of a request that could not even name a service."""
        request = CheckRequest(0, code_given, requester_ip, None, user_ip, via)
        return await self._run(request, None, None, CheckAnswer.INVALID_INPUT, self.clock.now())

    async def aclose(self) -> None:
        await self.bans.aclose()
        if self._sqlite is not None:
            await self._sqlite.aclose()

    # -- internals ------------------------------------------------------------------------------

    async def _answer_before_lookup(
        self, request: CheckRequest, view: ServiceView | None, now: datetime
    ) -> CheckAnswer | None:
        """Steps 2 to 5 of the order of checks; None: go on to the code."""
        if view is None:
            return CheckAnswer.INVALID_INPUT
        config = view.config
        if config is not None and await self.bans.is_banned(
            str(view.id), request.requester_ip, config.bans, now
        ):
            return CheckAnswer.BAN_IP_TEMP
        if request.apply_allowlist and not view.allowlist.allows(request.requester_ip):
            return CheckAnswer.INVALID_IP
        if view.status != "active" or config is None:
            return CheckAnswer.SERVICE_DISABLED
        return None

    async def _run(
        self,
        request: CheckRequest,
        view: ServiceView | None,
        code: str | None,
        answer: CheckAnswer | None,
        now: datetime,
    ) -> CheckResult:
        if self._sqlite is not None:
            return await self._sqlite.run(self._transaction, request, view, code, answer, now)
        assert self._pg is not None
        async with self._pg.connect() as conn:
            # Autocommit: each statement of _transaction is atomic on its own, and no BEGIN
            # and COMMIT round trips are paid.
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            return await autocommit.run_sync(self._transaction, request, view, code, answer, now)

    def _transaction(
        self,
        conn: Connection,
        request: CheckRequest,
        view: ServiceView | None,
        code: str | None,
        answer: CheckAnswer | None,
        now: datetime,
    ) -> CheckResult:
        """The check's transaction: find ``code`` (unless an ``answer`` was decided before
        looking), use it if it is valid, and store the check row."""
        if answer is not None or code is None or view is None:
            service_id = view.id if view is not None else None
            result = CheckResult(answer or CheckAnswer.INVALID_INPUT, service_id)
            conn.execute(_INSERT_CHECK, [self._check_row(request, view, result, now)])
            return result
        row = conn.execute(_FIND_CODE, {"service_id": view.id, "code": code}).one_or_none()
        if row is None:
            result = CheckResult(CheckAnswer.CODE_NOT_FOUND, view.id)
            conn.execute(_INSERT_CHECK, [self._check_row(request, view, result, now)])
            return result
        state = code_state(row)
        redemption = rules_.redeem(state, terms_of(row), now)
        if redemption.outcome is not CheckOutcome.OK:
            result = self._expired(view.id, row.id, state)
            conn.execute(_INSERT_CHECK, [self._check_row(request, view, result, now)])
            return result
        use = {"code_id": row.id, "now": now, "new_valid_until": redemption.state.valid_until}
        if self._combined:
            pending = CheckResult(CheckAnswer.CODE_OK, view.id, row.id)
            values = {
                f"check_{key}": value
                for key, value in self._check_row(request, view, pending, now).items()
                if key not in ("answer", "code_id")
            }
            out = conn.execute(_USE_AND_RECORD, {**values, **use}).one()
            return self._used(view.id, row.id, state, out.answer, out.uses_left, out.valid_until)
        updated = conn.execute(_USE, use).one_or_none()
        if updated is None:  # a one-use code used up by a concurrent check
            result = self._expired(view.id, row.id, replace(state, uses_left=0))
        else:
            result = self._used(
                view.id, row.id, state, CheckAnswer.CODE_OK, updated.uses_left, updated.valid_until
            )
        conn.execute(_INSERT_CHECK, [self._check_row(request, view, result, now)])
        return result

    @staticmethod
    def _used(
        service_id: int,
        code_id: int,
        state: CodeState,
        answer: str,
        uses_left: int | None,
        valid_until: datetime | None,
    ) -> CheckResult:
        if answer != CheckAnswer.CODE_OK:
            return CodeChecker._expired(service_id, code_id, replace(state, uses_left=0))
        after = replace(state, uses_left=uses_left, valid_until=valid_until)
        return CheckResult(
            CheckAnswer.CODE_OK, service_id, code_id, rules_.expires_at(after), uses_left
        )

    async def _count_failure(
        self, request: CheckRequest, view: ServiceView | None, result: CheckResult, now: datetime
    ) -> None:
        if view is None or view.config is None or result.answer not in FAILURES:
            return
        if await self.bans.record_failure(
            str(view.id), request.requester_ip, view.config.bans, now
        ):
            log.info("address %s banned on service %s", request.requester_ip, view.id)

    @staticmethod
    def _check_row(
        request: CheckRequest, view: ServiceView | None, result: CheckResult, now: datetime
    ) -> dict[str, Any]:
        return {
            "service_id": view.id if view is not None else None,
            "code_id": result.code_id,
            "code_given": printable(request.code, MAX_CODE_INPUT),
            "at": now,
            "requester_ip": printable(request.requester_ip, TRACE_FIELD),
            "user_ip": printable(request.user_ip, TRACE_FIELD),
            "answer": result.answer.value,
            "via": request.via,
        }

    @staticmethod
    def _expired(service_id: int, code_id: int, state: CodeState) -> CheckResult:
        return CheckResult(
            CheckAnswer.CODE_EXPIRED, service_id, code_id, rules_.expires_at(state), state.uses_left
        )


P = ParamSpec("P")
R = TypeVar("R")


class SqliteThread:
    """A synchronous SQLAlchemy engine on the same SQLite file, used from one thread only.

    Its connections get the settings store/db.py gives the async engine's: WAL, NORMAL
    synchronisation, a busy timeout for writers of other processes, foreign keys, and
    ``BEGIN IMMEDIATE``.
    """

    def __init__(self, url: URL) -> None:
        self.engine = create_engine(url.set(drivername="sqlite"), poolclass=SingletonThreadPool)
        event.listen(self.engine, "connect", _sqlite_connect)
        event.listen(self.engine, "begin", _sqlite_begin)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="code-checks")

    async def run(
        self, work: Callable[Concatenate[Connection, P], R], *args: P.args, **kwargs: P.kwargs
    ) -> R:
        def transaction() -> R:
            with self.engine.begin() as conn:
                return work(conn, *args, **kwargs)

        return await asyncio.get_running_loop().run_in_executor(self._executor, transaction)

    async def aclose(self) -> None:
        # The connection belongs to the thread: it is closed there.
        await asyncio.get_running_loop().run_in_executor(self._executor, self.engine.dispose)
        self._executor.shutdown(wait=True)


def _sqlite_connect(dbapi_connection: Any, _record: object) -> None:
    dbapi_connection.isolation_level = None  # BEGIN is ours (below)
    cursor = dbapi_connection.cursor()
    for pragma in (
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=NORMAL",
        "PRAGMA busy_timeout=30000",
        "PRAGMA foreign_keys=ON",
    ):
        cursor.execute(pragma)
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")
