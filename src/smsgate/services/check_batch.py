"""Checks decided in batches (group commit): the words, the decision rules and the queue.

Sites call ``check_code.php`` on every page view, so the database work of one check must cost
next to nothing on the event loop. Checks that arrive while a batch is in the database queue
up; the next batch takes them all (up to ``max_batch``) and decides them together
(services/check_stores.py):

1. every code of the batch is looked up at once, safe from other gateway processes (SQLite:
   ``BEGIN IMMEDIATE`` locks them; PostgreSQL: each use is written only over the state it
   was decided on, and decided again under ``SELECT ... FOR UPDATE`` when it was not);
2. :func:`decide` applies the use rules of domain/access_codes.py in arrival order, on the
   state as it evolves within the batch: two checks of a one-use code in one batch give
   ``CODE_OK`` then ``CODE_EXPIRED``;
3. the used codes are updated and every check row is inserted, set-wise, and committed;
4. only then is each check answered.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import unicodedata
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from smsgate.domain import access_codes as rules_
from smsgate.domain.access_codes import CheckOutcome, CodeKind, CodeRules, CodeState

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


MAX_CODE_INPUT: Final = 64  # code_checks.code_given; longer input is INVALID_INPUT
TRACE_FIELD: Final = 64  # code_checks.requester_ip / user_ip
MAX_BATCH: Final = 500

# The columns of a check row, in the order :func:`check_row` gives them.
CHECK_COLUMNS: Final = (
    "service_id",
    "code_id",
    "code_given",
    "at",
    "requester_ip",
    "user_ip",
    "answer",
    "via",
)


def printable(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters without control characters (PostgreSQL refuses
    NUL in text, and a trace shown in the panel has no use for the others)."""
    if text.isprintable():  # no character of category C: the common case, decided in C
        return text[:limit]
    kept = "".join(c for c in text if unicodedata.category(c)[0] != "C")
    return kept[:limit]


@dataclass(frozen=True, slots=True)
class CheckResult:
    answer: CheckAnswer
    service_id: int | None = None
    code_id: int | None = None
    # The code's terms after this check (CODE_OK / CODE_EXPIRED only).
    expires_at: datetime | None = None
    uses_left: int | None = None


@dataclass(slots=True)  # not frozen: made on every request, and a frozen __init__ costs more
class PendingCheck:
    """One check waiting for its batch: the code to look up, or an answer decided before
    looking (then only its row is stored), and what its check row records."""

    service_id: int | None  # None: the request named no service of the caller
    code: str | None  # normalised; None when ``answer`` is decided
    answer: CheckAnswer | None
    code_given: str
    requester_ip: str
    user_ip: str
    via: str
    at: datetime


@dataclass(slots=True)
class StoredCode:
    """A code as the batch found it, then as its checks leave it."""

    id: int
    status: str
    period_seconds: int | None
    state: CodeState
    used: bool = False  # at least one CODE_OK in this batch: the row is written back

    def terms(self) -> CodeRules:
        return terms_of(self.state.kind, self.state.uses_left, self.period_seconds)

    def written(self) -> tuple[Any, ...]:
        """The new values of the row: uses_count, first_used_at, valid_until, uses_left,
        status, and the id last."""
        state = self.state
        status = self.status
        if state.kind is CodeKind.USES and state.uses_left is not None and state.uses_left <= 0:
            status = rules_.CodeStatus.USED.value
        return (
            state.uses_count,
            state.first_used_at,
            state.valid_until,
            state.uses_left,
            status,
            self.id,
        )


@functools.lru_cache(maxsize=256)  # few distinct terms; CodeRules validates itself when made
def terms_of(kind: CodeKind, uses_left: int | None, period_seconds: int | None) -> CodeRules:
    """The rules a stored code was sold under, as far as a use needs them: a first-use code
    keeps the period it was issued with (``period_seconds``)."""
    if kind is CodeKind.USES:
        return CodeRules(kind=kind, uses=max(1, uses_left or 1))
    return CodeRules(kind=kind, validity=timedelta(seconds=max(1, period_seconds or 1)))


def stored_code(row: Sequence[Any], parse_time: Callable[[Any], datetime | None]) -> StoredCode:
    """A row of access_codes' id, code, kind, issued_at, valid_until, lifetime_until,
    first_used_at, uses_left, uses_count, period_seconds, status (services/check_stores.py
    selects them in that order); ``parse_time`` makes the times aware UTC datetimes."""
    issued_at = parse_time(row[3])
    assert issued_at is not None
    return StoredCode(
        id=row[0],
        status=row[10],
        period_seconds=row[9],
        state=CodeState(
            kind=CodeKind(row[2]),
            issued_at=issued_at,
            valid_until=parse_time(row[4]),
            lifetime_until=parse_time(row[5]),
            first_used_at=parse_time(row[6]),
            uses_left=row[7],
            uses_count=row[8],
        ),
    )


def lookups(batch: Sequence[PendingCheck]) -> dict[int, list[str]]:
    """The distinct codes to look up, by service."""
    wanted: dict[int, dict[str, None]] = {}
    for check in batch:
        if check.answer is None and check.code is not None and check.service_id is not None:
            wanted.setdefault(check.service_id, {})[check.code] = None
    return {service_id: list(codes) for service_id, codes in wanted.items()}


def decide(
    batch: Sequence[PendingCheck], found: Mapping[tuple[int, str], StoredCode]
) -> list[CheckResult]:
    """The answers of ``batch`` in order; each CODE_OK is applied to its code in ``found``
    (marked ``used``) before the next check of the same code is decided."""
    results: list[CheckResult] = []
    for check in batch:
        if check.answer is not None or check.code is None or check.service_id is None:
            results.append(CheckResult(check.answer or CheckAnswer.INVALID_INPUT, check.service_id))
            continue
        stored = found.get((check.service_id, check.code))
        if stored is None:
            results.append(CheckResult(CheckAnswer.CODE_NOT_FOUND, check.service_id))
            continue
        state = stored.state
        redemption = rules_.redeem(state, stored.terms(), check.at)
        if redemption.outcome is not CheckOutcome.OK:
            results.append(
                CheckResult(
                    CheckAnswer.CODE_EXPIRED,
                    check.service_id,
                    stored.id,
                    rules_.expires_at(state),
                    state.uses_left,
                )
            )
            continue
        after = redemption.state
        stored.state = after
        stored.used = True
        results.append(
            CheckResult(
                CheckAnswer.CODE_OK,
                check.service_id,
                stored.id,
                rules_.expires_at(after),
                after.uses_left,
            )
        )
    return results


def check_row(
    check: PendingCheck, result: CheckResult, time_value: Callable[[datetime], Any]
) -> tuple[Any, ...]:
    """The check row of :data:`CHECK_COLUMNS`; ``time_value`` turns ``at`` into what the
    database takes."""
    return (
        check.service_id,
        result.code_id,
        printable(check.code_given, MAX_CODE_INPUT),
        time_value(check.at),
        printable(check.requester_ip, TRACE_FIELD),
        printable(check.user_ip, TRACE_FIELD),
        result.answer.value,
        check.via,
    )


BatchRunner = Callable[[list[PendingCheck]], Awaitable[list[CheckResult]]]


class CheckBatcher:
    """Queues checks and runs them through ``run`` a batch at a time.

    Up to ``in_flight`` batches run at once (each from a drain task of its own that takes
    whatever is queued when it is free): on PostgreSQL one batch waits for its commit while
    the next one is read. A check is answered (its future resolved) only when its batch has
    committed; a batch that fails fails every check in it.
    """

    def __init__(self, run: BatchRunner, *, max_batch: int = MAX_BATCH, in_flight: int = 1) -> None:
        self._run = run
        self.max_batch = max_batch
        self.in_flight = in_flight
        self._queue: list[tuple[PendingCheck, asyncio.Future[CheckResult]]] = []
        self._drains: set[asyncio.Task[None]] = set()

    async def submit(self, check: PendingCheck) -> CheckResult:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[CheckResult] = loop.create_future()
        self._queue.append((check, future))
        if len(self._drains) < self.in_flight:
            # It starts on the loop's next turn: the checks that arrive meanwhile join it.
            self._drains.add(loop.create_task(self._drain_queue(), name="code-check-batches"))
        return await future

    async def aclose(self) -> None:
        if self._drains:
            await asyncio.wait(self._drains, timeout=30)

    async def _drain_queue(self) -> None:
        try:
            while self._queue:
                taken = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
                await self._settle(taken)
        except BaseException:
            for _, future in self._queue:
                future.cancel()
            self._queue.clear()
            raise
        finally:
            # Now, not in a done callback: a check queued before that callback ran would find
            # every drain still counted and wait for none.
            self._drains.discard(asyncio.current_task())

    async def _settle(self, taken: list[tuple[PendingCheck, asyncio.Future[CheckResult]]]) -> None:
        try:
            results = await self._run([check for check, _ in taken])
        except Exception as exc:
            log.warning("a batch of %d code checks failed: %r", len(taken), exc)
            for _, future in taken:
                if not future.done():
                    future.set_exception(CheckStoreUnavailable(str(exc)))
            return
        except BaseException:
            for _, future in taken:
                future.cancel()
            raise
        for (_, future), result in zip(taken, results, strict=True):
            if not future.done():
                future.set_result(result)


class CheckStoreUnavailable(Exception):
    """The batch a check was in could not be decided (the database failed)."""
