"""Accepting many bulk messages in one transaction with a fixed number of statements.

``accept_batch`` gives each request exactly the answer ``services/bulk.accept`` would give if
the requests ran one after another in the given order, in one transaction; but it reads what
the checks need for the whole batch at once, decides in memory, and writes the outcome for the
whole batch at once. About fifteen statements serve a batch of hundreds, where ``accept`` needs
ten or more per message; the statements, not the rules, are what a message costs.

Exactness under concurrency. Before deciding, the batch locks what its decisions depend on and
reads it in the same statement:

- every quota counter it may move, by ``INSERT ... ON CONFLICT DO UPDATE SET count = count
  RETURNING count`` (the row exists afterwards and is locked until commit; on SQLite the
  transaction holds the database's write lock from BEGIN IMMEDIATE anyway);
- every send mark it may move, the same way;
- every merchant it may charge, by ``SELECT ... FOR UPDATE``.

Nobody else can move those rows until the batch commits, so the decisions made in memory
against the values read are exact. The writes are still conditional (``count + n <= limit``,
the ledger's balance floor): if one found the row changed, it would fail the batch rather than
overdraw a quota or an account. Rows are locked in one order everywhere (by service, counters
month, week, day; then send marks; then merchants by id), as ``accept`` does, so batches and
single sends wait for each other but do not deadlock.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from smsgate.domain import quota
from smsgate.domain.errors import InvalidMsisdn, TextError
from smsgate.domain.msisdn import Msisdn, normalize_msisdn
from smsgate.domain.service_settings import BulkSettings
from smsgate.domain.text import choose_encoding, count_parts
from smsgate.services import quotas
from smsgate.services.bulk import (
    _LIMITS,
    MT_COST_KIND,
    OPT_OUT_REFUSALS,
    Accepted,
    BulkRequest,
    Refusal,
    Refused,
    SendResult,
    ip_allowed,
    text_matches,
)
from smsgate.services.routes import RouteChoice, RouteRow, pick_route
from smsgate.store.ledger import Charge, charge_merchant_many
from smsgate.store.models import (
    Merchant,
    MtMessage,
    Operator,
    OptOut,
    QuotaCounter,
    Route,
    SendMark,
    Service,
)

__all__ = ["accept_batch"]

_MT: Final = cast(Table, MtMessage.__table__)
_COUNTERS: Final = cast(Table, QuotaCounter.__table__)
_MARKS: Final = cast(Table, SendMark.__table__)
# A send mark row created only to be locked: "long ago", so it never delays anything.
_NEVER: Final = datetime(1970, 1, 1, tzinfo=UTC)
_PERIODS: Final = (quota.Period.MONTH, quota.Period.WEEK, quota.Period.DAY)

_COUNTER_UPDATE: Final = (
    update(_COUNTERS)
    .where(
        _COUNTERS.c.service_id == bindparam("b_service"),
        _COUNTERS.c.window == bindparam("b_window"),
        _COUNTERS.c.count + bindparam("b_used") <= bindparam("b_limit"),
    )
    .values(count=_COUNTERS.c.count + bindparam("b_used"))
)
_MARK_UPDATE: Final = (
    update(_MARKS)
    .where(_MARKS.c.service_id == bindparam("b_service"), _MARKS.c.scope == bindparam("b_scope"))
    .values(last_at=bindparam("b_last"))
)


class BatchConflict(Exception):
    """A locked row was not as read: a bug, never an answer; the batch is rolled back."""


@dataclass(frozen=True, slots=True)
class _Service:
    merchant_id: int
    type: str
    status: str
    ip_allowlist: list[Any]
    stored: dict[str, Any]
    merchant_status: str
    currency: str
    timezone: str
    settings: BulkSettings | None  # None: settings that no longer validate

    @property
    def price_per_part_minor(self) -> int:
        return int(self.stored.get("price_per_part_minor") or 0)


class _Windows:
    """The day, week and month windows of each request, computed once per batch: a window
    found for one instant serves every instant it contains (domain/quota.py does the
    calendar; this only avoids asking it again)."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, quota.Period], list[quota.Window]] = defaultdict(list)

    def of(self, instant: datetime, timezone: str) -> dict[quota.Period, quota.Window]:
        found: dict[quota.Period, quota.Window] = {}
        for period in _PERIODS:
            known = self._known[(timezone, period)]
            hit = next((w for w in known if instant in w), None)
            if hit is None:
                hit = quota.window(period, instant, quotas.merchant_zone(timezone))
                known.append(hit)
            found[period] = hit
        return found


@dataclass(slots=True)
class _Plan:
    """What the accepted messages of the batch will write."""

    rows: list[dict[str, Any]] = field(default_factory=list)  # MT rows, in request order
    indexes: list[int] = field(default_factory=list)  # the request of each row
    used: dict[tuple[int, str], int] = field(default_factory=lambda: defaultdict(int))
    marks: dict[tuple[int, str], datetime] = field(default_factory=dict)
    costs: dict[int, list[tuple[int, int]]] = field(default_factory=lambda: defaultdict(list))
    charged: dict[int, int] = field(default_factory=lambda: defaultdict(int))  # by merchant
    windows: _Windows = field(default_factory=_Windows)


def _insert(session: AsyncSession) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


async def accept_batch(
    session: AsyncSession, requests: Sequence[BulkRequest], nows: Sequence[datetime]
) -> list[SendResult]:
    """Decide and write every request in the caller's transaction (which must commit for the
    accepted ones to stand, and must roll back entirely if this raises)."""
    numbers = [_parse(request.msisdn) for request in requests]
    texts = [_measure(request.text) for request in requests]

    services = await _load_services(session, {r.service_id for r in requests})
    valid = [
        (r.service_id, n.digits)
        for r, n in zip(requests, numbers, strict=True)
        if isinstance(n, Msisdn)
    ]
    opted_out = await _opted_out(session, valid)
    earlier = await _earlier(session, requests)
    routes, operators = await _routing(session)
    route_of: dict[str | None, RouteChoice | None] = {}

    # What each message will need, found without touching a row that needs a lock.
    results: list[SendResult | _Duplicate | None] = [None] * len(requests)
    for i, request in enumerate(requests):
        results[i] = _check(
            request, numbers[i], texts[i], services.get(request.service_id), opted_out, earlier
        )
        if results[i] is None:
            number = numbers[i]
            assert isinstance(number, Msisdn)
            if number.region not in route_of:
                route_of[number.region] = pick_route(routes, operators, number.region)
            if route_of[number.region] is None:
                results[i] = Refused(
                    Refusal.NO_ROUTE, f"No operator route reaches {number.region or 'it'}."
                )
            else:
                results[i] = _check_text(request, texts[i], services[request.service_id])

    pending = [i for i, result in enumerate(results) if result is None]
    plan = _Plan()
    counters = await _lock_counters(session, requests, nows, services, pending, plan.windows)
    marks = await _lock_marks(session, requests, numbers, services, pending)
    funds = await _lock_merchants(session, requests, services, pending)

    accepted_keys: dict[tuple[int, str], int] = {}
    for i in pending:
        request, now = requests[i], nows[i]
        service = services[request.service_id]
        assert service.settings is not None
        number, text = numbers[i], texts[i]
        assert isinstance(number, Msisdn) and not isinstance(text, TextError)
        key = (
            (request.service_id, request.idempotency_key)
            if request.idempotency_key is not None
            else None
        )
        if key is not None and key in accepted_keys:
            results[i] = _Duplicate(accepted_keys[key])
            continue
        results[i] = _decide(
            request, now, number, text, service, counters, marks, funds, plan, route_of
        )
        if results[i] is None:  # accepted: its row is the plan's last
            plan.indexes.append(i)
            if key is not None:
                accepted_keys[key] = i

    await _write(session, plan, services, results)
    return _finish(results)


# --- pure checks ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Text:
    encoding: str
    parts: int


def _parse(raw: str) -> Msisdn | InvalidMsisdn:
    try:
        return normalize_msisdn(raw)
    except InvalidMsisdn as error:
        return error


def _measure(text: str) -> _Text | TextError:
    try:
        encoding = choose_encoding(text)
        return _Text(encoding.value, count_parts(text, encoding=encoding))
    except TextError as error:
        return error


def _check(
    request: BulkRequest,
    number: Msisdn | InvalidMsisdn,
    text: _Text | TextError,
    service: _Service | None,
    opted_out: set[tuple[int, str]],
    earlier: dict[tuple[int, str], Accepted],
) -> SendResult | None:
    """Steps 2-5 of services/bulk.py's order, up to the route (None: continue)."""
    if (
        service is None
        or service.type != "bulk"
        or (request.user_id is not None and service.merchant_id != request.user_id)
    ):
        return Refused(Refusal.UNKNOWN_SERVICE, "No such bulk service for this merchant.")
    if request.check_ip and not ip_allowed(request.client_ip, service.ip_allowlist):
        return Refused(Refusal.IP_NOT_ALLOWED, "This address may not send for the service.")
    if service.status != "active" or service.merchant_status != "active":
        return Refused(Refusal.SERVICE_DISABLED, "The service is disabled.")
    if service.settings is None:
        return Refused(Refusal.SERVICE_DISABLED, "The service's settings are invalid.")
    if isinstance(number, InvalidMsisdn):
        return Refused(Refusal.INVALID_MSISDN, str(number))
    if request.idempotency_key is not None:
        found = earlier.get((request.service_id, request.idempotency_key))
        if found is not None:
            return found
    if (request.service_id, number.digits) in opted_out:
        OPT_OUT_REFUSALS.labels(str(request.service_id)).inc()
        return Refused(Refusal.OPTED_OUT, "The recipient opted out of this service.")
    return None


def _check_text(
    request: BulkRequest, text: _Text | TextError, service: _Service
) -> SendResult | None:
    """Steps 6-7: length and approved patterns."""
    settings = service.settings
    assert settings is not None
    if isinstance(text, TextError):
        return Refused(Refusal.INVALID_INPUT, str(text))
    if text.parts > settings.max_parts:
        return Refused(
            Refusal.TOO_LONG,
            f"The text needs {text.parts} parts ({text.encoding}); the service allows "
            f"{settings.max_parts}.",
        )
    if settings.patterns and not text_matches(settings.patterns, request.text):
        return Refused(Refusal.PATTERN, "The text matches none of the approved patterns.")
    return None


@dataclass(frozen=True, slots=True)
class _Duplicate:
    """Accepted earlier in the same batch under the same idempotency key."""

    index: int


def _decide(
    request: BulkRequest,
    now: datetime,
    number: Msisdn,
    text: _Text,
    service: _Service,
    counters: dict[tuple[int, str], int],
    marks: dict[tuple[int, str], datetime],
    funds: dict[int, tuple[int, int]],
    plan: _Plan,
    route_of: dict[str | None, RouteChoice | None],
) -> SendResult | None:
    """Steps 8-11 in memory, against the locked values and what the batch already took."""
    settings = service.settings
    assert settings is not None
    windows = plan.windows.of(now, service.timezone)
    sid = request.service_id
    for period in _PERIODS:
        limit: int | None = getattr(settings, f"limit_{period.value}")
        if limit is None:
            continue
        window = windows[period]
        used = counters[(sid, window.key)] + plan.used.get((sid, window.key), 0)
        if used + text.parts > limit:
            hit = quotas.LimitHit[period.name]
            retry = window.end if text.parts <= limit else None
            return Refused(
                _LIMITS[hit],
                f"The service's {period.value} limit ({text.parts} part(s) asked) is reached.",
                retry,
            )
    scope = number.digits if settings.min_interval_scope == "recipient" else quotas.SERVICE_SCOPE
    interval = timedelta(seconds=settings.min_interval_seconds)
    if settings.min_interval_seconds > 0:
        last = plan.marks.get((sid, scope), marks[(sid, scope)])
        if last > now - interval:
            return Refused(
                Refusal.LIMIT_DELAY,
                f"Less than {settings.min_interval_seconds} s since the last message.",
                last + interval,
            )
    cost = service.price_per_part_minor * text.parts
    if cost > 0:
        balance, floor = funds[service.merchant_id]
        if balance - plan.charged[service.merchant_id] - cost < floor:
            return Refused(
                Refusal.NO_FUNDS, "The merchant's balance and credit do not cover the message."
            )
    # Accepted: take what it needs.
    for period in _PERIODS:
        if getattr(settings, f"limit_{period.value}") is not None:
            plan.used[(sid, windows[period].key)] += text.parts
    if settings.min_interval_seconds > 0:
        plan.marks[(sid, scope)] = now
    route = route_of[number.region]
    assert route is not None
    if cost > 0:
        plan.costs[service.merchant_id].append((len(plan.rows), cost))
        plan.charged[service.merchant_id] += cost
    plan.rows.append(
        {
            "merchant_id": service.merchant_id,
            "service_id": sid,
            "mo_id": None,
            "operator_id": route.operator_id,
            "msisdn": number.digits,
            "sender": settings.sender,
            "text": request.text,
            "encoding": text.encoding,
            "parts": text.parts,
            "status": "queued",
            "error_code": "",
            "cost_minor": cost,
            "currency": service.currency,
            "idempotency_key": request.idempotency_key,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
            "details": {"via": request.via, "client_ip": request.client_ip, **request.details},
        }
    )
    return None


# --- reads ------------------------------------------------------------------------------------


async def _load_services(session: AsyncSession, ids: set[int]) -> dict[int, _Service]:
    rows = await session.execute(
        select(
            Service.id,
            Service.type,
            Service.merchant_id,
            Service.status,
            Service.ip_allowlist,
            Service.settings,
            Merchant.status.label("merchant_status"),
            Merchant.currency,
            Merchant.timezone,
        )
        .join(Merchant, Merchant.id == Service.merchant_id)
        .where(Service.id.in_(sorted(ids)))
    )
    found: dict[int, _Service] = {}
    for row in rows.all():
        settings: BulkSettings | None = None
        if row.type == "bulk":
            try:
                settings = BulkSettings.from_stored(row.settings)
            except ValueError:
                settings = None
        found[row.id] = _Service(
            merchant_id=row.merchant_id,
            type=row.type,
            status=row.status,
            ip_allowlist=list(row.ip_allowlist or []),
            stored=dict(row.settings or {}),
            merchant_status=row.merchant_status,
            currency=row.currency,
            timezone=row.timezone,
            settings=settings,
        )
    return found


async def _opted_out(session: AsyncSession, pairs: list[tuple[int, str]]) -> set[tuple[int, str]]:
    if not pairs:
        return set()
    wanted = set(pairs)
    rows = await session.execute(
        select(OptOut.service_id, OptOut.msisdn).where(
            OptOut.service_id.in_(sorted({s for s, _ in wanted})),
            OptOut.msisdn.in_(sorted({m for _, m in wanted})),
        )
    )
    return {(row.service_id, row.msisdn) for row in rows.all()} & wanted


async def _earlier(
    session: AsyncSession, requests: Sequence[BulkRequest]
) -> dict[tuple[int, str], Accepted]:
    keys = {(r.service_id, r.idempotency_key) for r in requests if r.idempotency_key is not None}
    if not keys:
        return {}
    rows = await session.execute(
        select(
            MtMessage.id,
            MtMessage.service_id,
            MtMessage.idempotency_key,
            MtMessage.msisdn,
            MtMessage.parts,
            MtMessage.encoding,
            MtMessage.cost_minor,
            MtMessage.currency,
            MtMessage.operator_id,
        ).where(
            MtMessage.service_id.in_(sorted({s for s, _ in keys})),
            MtMessage.idempotency_key.in_(sorted({k for _, k in keys})),
        )
    )
    found: dict[tuple[int, str], Accepted] = {}
    for row in rows.all():
        key = (row.service_id, row.idempotency_key)
        if key in keys:
            found[key] = Accepted(
                row.id,
                row.msisdn,
                row.parts,
                row.encoding,
                row.cost_minor,
                row.currency,
                row.operator_id,
                duplicate=True,
            )
    return found


async def _routing(session: AsyncSession) -> tuple[list[RouteRow], list[tuple[str, str]]]:
    """The whole routing table and the enabled operators: both are small."""
    routes = [
        RouteRow(row.country, row.operator_id, row.priority)
        for row in (
            await session.execute(
                select(Route.country, Route.operator_id, Route.priority)
                .join(Operator, Operator.id == Route.operator_id)
                .where(Operator.enabled.is_(True))
            )
        ).all()
    ]
    operators = [
        (row.id, row.country)
        for row in (
            await session.execute(
                select(Operator.id, Operator.country).where(Operator.enabled.is_(True))
            )
        ).all()
    ]
    return routes, operators


# --- locks ------------------------------------------------------------------------------------


async def _lock_counters(
    session: AsyncSession,
    requests: Sequence[BulkRequest],
    nows: Sequence[datetime],
    services: dict[int, _Service],
    pending: list[int],
    plan_windows: _Windows,
) -> dict[tuple[int, str], int]:
    order = {period: rank for rank, period in enumerate(_PERIODS)}
    wanted: dict[tuple[int, str], tuple[int, int]] = {}  # key -> (service, period rank)
    for i in pending:
        service = services[requests[i].service_id]
        settings = service.settings
        assert settings is not None
        windows = plan_windows.of(nows[i], service.timezone)
        for period in _PERIODS:
            if getattr(settings, f"limit_{period.value}") is not None:
                key = (requests[i].service_id, windows[period].key)
                wanted[key] = (requests[i].service_id, order[period])
    if not wanted:
        return {}
    keys = sorted(wanted, key=lambda key: (wanted[key], key[1]))
    statement = _insert(session)(QuotaCounter).values(
        [{"service_id": s, "window": w, "count": 0} for s, w in keys]
    )
    rows = await session.execute(
        statement.on_conflict_do_update(
            index_elements=["service_id", "window"], set_={"count": QuotaCounter.count}
        ).returning(QuotaCounter.service_id, QuotaCounter.window, QuotaCounter.count)
    )
    # row.count would be tuple.count: read by position.
    return {(row[0], row[1]): int(row[2]) for row in rows.all()}


async def _lock_marks(
    session: AsyncSession,
    requests: Sequence[BulkRequest],
    numbers: Sequence[Msisdn | InvalidMsisdn],
    services: dict[int, _Service],
    pending: list[int],
) -> dict[tuple[int, str], datetime]:
    wanted: set[tuple[int, str]] = set()
    for i in pending:
        settings = services[requests[i].service_id].settings
        assert settings is not None
        if settings.min_interval_seconds > 0:
            number = numbers[i]
            assert isinstance(number, Msisdn)
            scope = (
                number.digits
                if settings.min_interval_scope == "recipient"
                else quotas.SERVICE_SCOPE
            )
            wanted.add((requests[i].service_id, scope))
    if not wanted:
        return {}
    statement = _insert(session)(SendMark).values(
        [{"service_id": s, "scope": scope, "last_at": _NEVER} for s, scope in sorted(wanted)]
    )
    rows = await session.execute(
        statement.on_conflict_do_update(
            index_elements=["service_id", "scope"], set_={"last_at": SendMark.last_at}
        ).returning(SendMark.service_id, SendMark.scope, SendMark.last_at)
    )
    return {(row.service_id, row.scope): row.last_at for row in rows.all()}


async def _lock_merchants(
    session: AsyncSession,
    requests: Sequence[BulkRequest],
    services: dict[int, _Service],
    pending: list[int],
) -> dict[int, tuple[int, int]]:
    """Balance and floor (``-credit``) of every merchant the batch may charge."""
    ids = {
        services[requests[i].service_id].merchant_id
        for i in pending
        if services[requests[i].service_id].price_per_part_minor > 0
    }
    if not ids:
        return {}
    rows = await session.execute(
        select(Merchant.id, Merchant.balance_minor, Merchant.credit_minor)
        .where(Merchant.id.in_(sorted(ids)))
        .order_by(Merchant.id)
        .with_for_update()
    )
    return {row.id: (int(row.balance_minor), -int(row.credit_minor)) for row in rows.all()}


# --- writes -----------------------------------------------------------------------------------


async def _write(
    session: AsyncSession,
    plan: _Plan,
    services: dict[int, _Service],
    results: list[SendResult | _Duplicate | None],
) -> None:
    if not plan.rows:
        return
    connection = await session.connection()
    ids = (
        (
            await connection.execute(
                insert(_MT).returning(_MT.c.id, sort_by_parameter_order=True), plan.rows
            )
        )
        .scalars()
        .all()
    )
    limits = _limits_by_counter(plan, services)
    counter_moves = [
        {"b_service": s, "b_window": w, "b_used": used, "b_limit": limits[(s, w)]}
        for (s, w), used in sorted(plan.used.items())
        if used
    ]
    if counter_moves:
        moved = await connection.execute(_COUNTER_UPDATE, counter_moves)
        if moved.rowcount not in (-1, len(counter_moves)):
            raise BatchConflict("a quota counter moved under its lock")
    if plan.marks:
        await connection.execute(
            _MARK_UPDATE,
            [
                {"b_service": s, "b_scope": scope, "b_last": last}
                for (s, scope), last in sorted(plan.marks.items())
            ],
        )
    for merchant_id, costs in sorted(plan.costs.items()):
        row_of = {position: cost for position, cost in costs}
        any_service = services[int(plan.rows[costs[0][0]]["service_id"])]
        await charge_merchant_many(
            session,
            merchant_id=merchant_id,
            charges=[
                Charge(
                    f"mt:{ids[position]}",
                    row_of[position],
                    f"{plan.rows[position]['parts']} part(s) to {plan.rows[position]['msisdn']}",
                )
                for position, _ in costs
            ],
            currency=any_service.currency,
            kind=MT_COST_KIND,
            now=plan.rows[costs[-1][0]]["created_at"],
        )
    for position, index in enumerate(plan.indexes):
        row = plan.rows[position]
        results[index] = Accepted(
            int(ids[position]),
            row["msisdn"],
            row["parts"],
            row["encoding"],
            row["cost_minor"],
            row["currency"],
            row["operator_id"],
        )


def _limits_by_counter(plan: _Plan, services: dict[int, _Service]) -> dict[tuple[int, str], int]:
    limits: dict[tuple[int, str], int] = {}
    for s, w in plan.used:
        settings = services[s].settings
        assert settings is not None
        period = {"d": "day", "w": "week", "m": "month"}[w[0]]
        limit = getattr(settings, f"limit_{period}")
        assert limit is not None
        limits[(s, w)] = limit
    return limits


def _finish(results: list[SendResult | _Duplicate | None]) -> list[SendResult]:
    final: list[SendResult] = []
    for result in results:
        if isinstance(result, _Duplicate):
            first = results[result.index]
            assert isinstance(first, Accepted)
            final.append(
                Accepted(
                    first.mt_id,
                    first.msisdn,
                    first.parts,
                    first.encoding,
                    first.cost_minor,
                    first.currency,
                    first.operator_id,
                    duplicate=True,
                )
            )
        else:
            assert result is not None
            final.append(result)
    return final
