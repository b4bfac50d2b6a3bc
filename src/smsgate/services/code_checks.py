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
time), the bans from process memory (or Redis), and the code's lookup, its use and the check
row are decided together with the other checks that arrive meanwhile, in one transaction
per batch (services/check_batch.py, services/check_stores.py). That transaction locks the
codes it reads, so of N concurrent checks of a one-use code exactly one gets ``CODE_OK``,
across any number of gateway processes, and concurrent first uses of a first-use code agree
on one period. A check is answered only once its row and its use are committed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncEngine

from smsgate.domain import access_codes as rules_
from smsgate.domain.access_codes import CodeKind, CodeState
from smsgate.domain.clock import Clock
from smsgate.services.access_code_settings import (
    AccessCodeConfig,
    Allowlist,
    MisconfiguredService,
    read_config,
)
from smsgate.services.bans import BanList
from smsgate.services.check_batch import (
    MAX_CODE_INPUT,
    TRACE_FIELD,
    CheckAnswer,
    CheckBatcher,
    CheckResult,
    CheckStoreUnavailable,
    PendingCheck,
    printable,
)
from smsgate.services.check_stores import ServiceRow, make_check_store

__all__ = [
    "FAILURES",
    "MAX_CODE_INPUT",
    "SERVICE_TYPE",
    "TRACE_FIELD",
    "CheckAnswer",
    "CheckRequest",
    "CheckResult",
    "CheckStoreUnavailable",
    "CodeChecker",
    "ServiceCache",
    "ServiceView",
    "code_state",
    "printable",
    "service_view",
]

log = logging.getLogger(__name__)


# Answers that count towards a ban of the requesting address.
FAILURES: Final = frozenset({CheckAnswer.INVALID_IP, CheckAnswer.CODE_NOT_FOUND})

SERVICE_TYPE: Final = "access_code"


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

    @property
    def scope(self) -> str:
        """The scope of its bans."""
        return str(self.id)


ServiceLoader = Callable[[int], Awaitable["ServiceView | None"]]


class ServiceCache:
    """Services by id, for ``ttl`` seconds of the monotonic clock, unknown ids included (so a
    flood of made-up ids does not reach the database either); at most ``max_entries``.

    An entry past half its life is read again in the background while it is still served,
    so under steady traffic no check waits for the database to learn a service; only an
    expired (or never seen) one is awaited, and then by one read that every check asking
    at that moment shares.
    """

    def __init__(self, load: ServiceLoader, ttl: float, max_entries: int = 10_000) -> None:
        self.load = load
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[int, tuple[float, ServiceView | None]] = {}  # id: (read at, view)
        self._reads: dict[int, asyncio.Task[ServiceView | None]] = {}

    async def get(self, service_id: int) -> ServiceView | None:
        cached = self._entries.get(service_id)
        if cached is not None:
            age = time.monotonic() - cached[0]
            if age < self.ttl:
                if age >= self.ttl / 2 and service_id not in self._reads:
                    self._read(service_id).add_done_callback(_log_failed_refresh)
                return cached[1]
        # Shielded: a check that gives up must not cancel the read the others wait for.
        return await asyncio.shield(self._read(service_id))

    def forget(self, service_id: int | None = None) -> None:
        if service_id is None:
            self._entries.clear()
        else:
            self._entries.pop(service_id, None)

    def _read(self, service_id: int) -> asyncio.Task[ServiceView | None]:
        task = self._reads.get(service_id)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._fetch(service_id))
            self._reads[service_id] = task
        return task

    async def _fetch(self, service_id: int) -> ServiceView | None:
        started = time.monotonic()
        try:
            view = await self.load(service_id)
        finally:
            self._reads.pop(service_id, None)
        if self.ttl > 0:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[service_id] = (started, view)
        return view


def _log_failed_refresh(task: asyncio.Task[ServiceView | None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("a service could not be read again; the cached one is kept for now")


def service_view(row: ServiceRow | None) -> ServiceView | None:
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


class CodeChecker:
    """Answers checks for one gateway process: the service cache, the ban list and the batch
    queue are its own; everything that must be shared lives in the database and the ban
    storage."""

    def __init__(
        self, engine: AsyncEngine, clock: Clock, bans: BanList, *, cache_seconds: float = 1.0
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.bans = bans
        self._store = make_check_store(engine.url)
        self.services = ServiceCache(self._load_service, cache_seconds)
        self._batches = CheckBatcher(self._store.run, in_flight=self._store.batches_in_flight)

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
        code: str | None = None
        if answer is None:
            code = rules_.normalize_code_input(request.code)
            if not code:
                answer = CheckAnswer.INVALID_INPUT
            elif len(code) > rules_.MAX_CODE_LENGTH or not (code.isascii() and code.isalnum()):
                # Codes are drawn from ASCII letters and digits: anything else is no code (and
                # never reaches the database, which may refuse some characters, such as NUL).
                answer = CheckAnswer.CODE_NOT_FOUND
        result = await self._batches.submit(
            PendingCheck(
                view.id if view is not None else None,
                code if answer is None else None,
                answer,
                request.code,
                request.requester_ip,
                request.user_ip,
                request.via,
                now,
            )
        )
        if result.answer in FAILURES and view is not None:
            await self._count_failure(request, view, now)
        return result

    async def record_invalid_input(
        self, *, code_given: str, requester_ip: str, user_ip: str = "", via: str = "legacy"
    ) -> CheckResult:
        """Keep the trace of a request that could not even name a service."""
        return await self._batches.submit(
            PendingCheck(
                None,
                None,
                CheckAnswer.INVALID_INPUT,
                code_given,
                requester_ip,
                user_ip,
                via,
                self.clock.now(),
            )
        )

    async def start(self) -> None:
        """Open the store's connections before the first check needs them; a failure is
        logged and left to the first check to meet again."""
        try:
            await self._store.start()
        except Exception:
            log.warning("code checks: the store could not start yet", exc_info=True)

    async def aclose(self) -> None:
        await self._batches.aclose()
        await self._store.aclose()
        await self.bans.aclose()

    # -- internals ------------------------------------------------------------------------------

    async def _load_service(self, service_id: int) -> ServiceView | None:
        return service_view(await self._store.service(service_id))

    async def _answer_before_lookup(
        self, request: CheckRequest, view: ServiceView | None, now: datetime
    ) -> CheckAnswer | None:
        """Steps 2 to 5 of the order of checks; None: go on to the code."""
        if view is None:
            return CheckAnswer.INVALID_INPUT
        config = view.config
        if config is not None:
            scope = view.scope
            banned = self.bans.is_banned_now(scope, request.requester_ip, config.bans, now)
            if banned is None:
                banned = await self.bans.is_banned(scope, request.requester_ip, config.bans, now)
            if banned:
                return CheckAnswer.BAN_IP_TEMP
        if request.apply_allowlist and not view.allowlist.allows(request.requester_ip):
            return CheckAnswer.INVALID_IP
        if view.status != "active" or config is None:
            return CheckAnswer.SERVICE_DISABLED
        return None

    async def _count_failure(self, request: CheckRequest, view: ServiceView, now: datetime) -> None:
        if view.config is None:
            return
        if await self.bans.record_failure(view.scope, request.requester_ip, view.config.bans, now):
            log.info("address %s banned on service %s", request.requester_ip, view.id)
