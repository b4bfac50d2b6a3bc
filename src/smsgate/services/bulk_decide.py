"""The rules of a bulk send, decided for a whole batch at once, in memory.

A ``BatchDecision`` gives each request exactly the answer ``services/bulk.accept`` would give
if the requests ran one after another in the given order. It does no I/O: a store (SQLAlchemy
in ``bulk_batch.py``, stdlib sqlite3 in ``bulk_sqlite.py``, asyncpg in ``bulk_postgres.py``)
reads what it asks for, locks what it names, and writes what it decided, in one transaction:

1. ``service_ids``, ``recipients``, ``idempotency_keys``: what to read;
2. ``check``: steps 2-7 of the order of checks (nothing locked is needed);
3. ``counter_keys``, ``mark_keys``, ``merchant_ids``: the rows to lock (and read), in the
   one lock order every transaction uses (counters by service, month, week, day; then send
   marks; then merchants by id);
4. ``decide``: steps 8-11 against the locked values and what earlier messages of the batch
   took;
5. ``mt_rows``, ``counter_moves``, ``mark_moves``, ``charges``: the writes;
6. ``finish``: the answers, given the ids of the inserted MT rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from smsgate.domain.errors import InvalidMsisdn, TextError
from smsgate.domain.msisdn import Msisdn
from smsgate.domain.service_settings import BulkSettings
from smsgate.services import quotas
from smsgate.services.bulk_inputs import (
    PERIODS,
    MeasuredText,
    ServiceView,
    Windows,
    measure_text,
    parse_number,
)
from smsgate.services.bulk_model import (
    LIMIT_REFUSALS,
    OPT_OUT_REFUSALS,
    Accepted,
    BulkRequest,
    Refusal,
    Refused,
    SendResult,
    service_refusal,
    text_refusal,
)
from smsgate.services.routes import RouteChoice, RouteRow, pick_route

__all__ = ["BatchDecision", "MerchantCharge"]


@dataclass(frozen=True, slots=True)
class MerchantCharge:
    """The debit of one merchant for a batch: the total, and one ledger entry per MT."""

    merchant_id: int
    currency: str
    total: int
    entries: list[tuple[int, int, str]]  # (MT row position, amount, memo)
    at: datetime  # the ledger entries' time: the last message's


@dataclass(frozen=True, slots=True)
class _Duplicate:
    """Accepted earlier in the same batch under the same idempotency key."""

    index: int


class BatchDecision:
    """One batch's answers; see the module docstring for the order of calls."""

    def __init__(self, requests: Sequence[BulkRequest], nows: Sequence[datetime]) -> None:
        self.requests = list(requests)
        self.nows = list(nows)
        self._numbers = [parse_number(r.msisdn) for r in self.requests]
        self._texts = [measure_text(r.text) for r in self.requests]
        self._results: list[SendResult | _Duplicate | None] = [None] * len(self.requests)
        self._services: dict[int, ServiceView] = {}
        self._routes: dict[str | None, RouteChoice | None] = {}
        self._pending: list[int] = []
        self._windows = Windows()
        # What the accepted messages take and write.
        self._rows: list[dict[str, Any]] = []  # MT rows, in request order
        self._row_request: list[int] = []  # the request of each row
        self._used: dict[tuple[int, str], int] = defaultdict(int)
        self._marks: dict[tuple[int, str], datetime] = {}
        self._costs: dict[int, list[tuple[int, int]]] = defaultdict(list)
        self._charged: dict[int, int] = defaultdict(int)

    # --- 1. what to read --------------------------------------------------------------------

    def service_ids(self) -> list[int]:
        return sorted({r.service_id for r in self.requests})

    def recipients(self) -> list[tuple[int, str]]:
        """(service, number) of every well-formed number: for the opt-out lookup."""
        return sorted(
            {
                (r.service_id, n.digits)
                for r, n in zip(self.requests, self._numbers, strict=True)
                if isinstance(n, Msisdn)
            }
        )

    def idempotency_keys(self) -> list[tuple[int, str]]:
        return sorted(
            {(r.service_id, r.idempotency_key) for r in self.requests if r.idempotency_key}
        )

    # --- 2. steps 2-7 -----------------------------------------------------------------------

    def check(
        self,
        services: dict[int, ServiceView],
        opted_out: set[tuple[int, str]],
        earlier: dict[tuple[int, str], Accepted],
        routes: Sequence[RouteRow],
        operators: Sequence[tuple[str, str]],
    ) -> None:
        self._services = services
        for i, request in enumerate(self.requests):
            result = self._check(request, self._numbers[i], services.get(request.service_id))
            if result is None:
                result = self._check_known(request, self._numbers[i], opted_out, earlier)
            if result is None:
                number = self._numbers[i]
                assert isinstance(number, Msisdn)
                if number.region not in self._routes:
                    self._routes[number.region] = pick_route(routes, operators, number.region)
                if self._routes[number.region] is None:
                    result = Refused(
                        Refusal.NO_ROUTE, f"No operator route reaches {number.region or 'it'}."
                    )
                else:
                    result = self._check_text(request, self._texts[i], services[request.service_id])
            self._results[i] = result
        self._pending = [i for i, result in enumerate(self._results) if result is None]

    @staticmethod
    def _check(
        request: BulkRequest, number: Msisdn | InvalidMsisdn, service: ServiceView | None
    ) -> SendResult | None:
        refused = service_refusal(request, service)
        if refused is not None:
            return refused
        assert service is not None  # service_refusal refuses a missing service
        if service.settings is None:
            return Refused(Refusal.SERVICE_DISABLED, "The service's settings are invalid.")
        if isinstance(number, InvalidMsisdn):
            return Refused(Refusal.INVALID_MSISDN, str(number))
        return None

    @staticmethod
    def _check_known(
        request: BulkRequest,
        number: Msisdn | InvalidMsisdn,
        opted_out: set[tuple[int, str]],
        earlier: dict[tuple[int, str], Accepted],
    ) -> SendResult | None:
        assert isinstance(number, Msisdn)
        if request.idempotency_key is not None:
            found = earlier.get((request.service_id, request.idempotency_key))
            if found is not None:
                return found
        if (request.service_id, number.digits) in opted_out:
            OPT_OUT_REFUSALS.labels(str(request.service_id)).inc()
            return Refused(Refusal.OPTED_OUT, "The recipient opted out of this service.")
        return None

    @staticmethod
    def _check_text(
        request: BulkRequest, text: MeasuredText | TextError, service: ServiceView
    ) -> SendResult | None:
        assert service.settings is not None
        return text_refusal(request, text, service.settings)

    # --- 3. what to lock --------------------------------------------------------------------

    def _settings(self, i: int) -> BulkSettings:
        settings = self._services[self.requests[i].service_id].settings
        assert settings is not None
        return settings

    def counter_keys(self) -> list[tuple[int, str]]:
        """(service, window key) of every counter a pending message may move, in lock order."""
        wanted: dict[tuple[int, str], tuple[int, int]] = {}
        for i in self._pending:
            sid = self.requests[i].service_id
            service = self._services[sid]
            if not service.limits:
                continue
            windows = self._windows.of(self.nows[i], service.timezone)
            for period, _ in service.limits:
                wanted[(sid, windows[period].key)] = (sid, PERIODS.index(period))
        return sorted(wanted, key=lambda key: (wanted[key], key[1]))

    def _scope(self, i: int) -> str:
        number = self._numbers[i]
        assert isinstance(number, Msisdn)
        if self._settings(i).min_interval_scope == "recipient":
            return number.digits
        return quotas.SERVICE_SCOPE

    def mark_keys(self) -> list[tuple[int, str]]:
        """(service, scope) of every send mark a pending message may move, in lock order."""
        return sorted(
            {
                (self.requests[i].service_id, self._scope(i))
                for i in self._pending
                if self._settings(i).min_interval_seconds > 0
            }
        )

    def merchant_ids(self) -> list[int]:
        """The merchants a pending message may charge, in lock order."""
        return sorted(
            {
                self._services[self.requests[i].service_id].merchant_id
                for i in self._pending
                if self._services[self.requests[i].service_id].price_per_part_minor > 0
            }
        )

    # --- 4. steps 8-11 ----------------------------------------------------------------------

    def decide(
        self,
        counters: dict[tuple[int, str], int],
        marks: dict[tuple[int, str], datetime],
        funds: dict[int, tuple[int, int]],
    ) -> None:
        """``counters``: the locked counts; ``marks``: the locked last sends; ``funds``: each
        merchant's locked balance and floor (``-credit``)."""
        accepted_keys: dict[tuple[int, str], int] = {}
        for i in self._pending:
            request = self.requests[i]
            key = (
                (request.service_id, request.idempotency_key)
                if request.idempotency_key is not None
                else None
            )
            if key is not None and key in accepted_keys:
                self._results[i] = _Duplicate(accepted_keys[key])
                continue
            self._results[i] = self._decide(i, counters, marks, funds)
            if self._results[i] is None:  # accepted: its row is the last
                self._row_request.append(i)
                if key is not None:
                    accepted_keys[key] = i

    def _decide(
        self,
        i: int,
        counters: dict[tuple[int, str], int],
        marks: dict[tuple[int, str], datetime],
        funds: dict[int, tuple[int, int]],
    ) -> SendResult | None:
        request, now = self.requests[i], self.nows[i]
        service = self._services[request.service_id]
        settings = self._settings(i)
        number, text = self._numbers[i], self._texts[i]
        assert isinstance(number, Msisdn) and isinstance(text, MeasuredText)
        windows = self._windows.of(now, service.timezone) if service.limits else {}
        sid = request.service_id
        for period, limit in service.limits:
            window = windows[period]
            used = counters[(sid, window.key)] + self._used.get((sid, window.key), 0)
            if used + text.parts > limit:
                retry = window.end if text.parts <= limit else None
                return Refused(
                    LIMIT_REFUSALS[quotas.LimitHit[period.name]],
                    f"The service's {period.value} limit ({text.parts} part(s) asked) is reached.",
                    retry,
                )
        interval = timedelta(seconds=settings.min_interval_seconds)
        scope = self._scope(i)
        if settings.min_interval_seconds > 0:
            last = self._marks.get((sid, scope), marks[(sid, scope)])
            if last > now - interval:
                return Refused(
                    Refusal.LIMIT_DELAY,
                    f"Less than {settings.min_interval_seconds} s since the last message.",
                    last + interval,
                )
        cost = service.price_per_part_minor * text.parts
        if cost > 0:
            balance, floor = funds[service.merchant_id]
            if balance - self._charged[service.merchant_id] - cost < floor:
                return Refused(
                    Refusal.NO_FUNDS, "The merchant's balance and credit do not cover the message."
                )
        # Accepted: take what it needs.
        for period, _ in service.limits:
            self._used[(sid, windows[period].key)] += text.parts
        if settings.min_interval_seconds > 0:
            self._marks[(sid, scope)] = now
        route = self._routes[number.region]
        assert route is not None
        if cost > 0:
            self._costs[service.merchant_id].append((len(self._rows), cost))
            self._charged[service.merchant_id] += cost
        self._rows.append(
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

    # --- 5. the writes ----------------------------------------------------------------------

    @property
    def mt_rows(self) -> list[dict[str, Any]]:
        """The MT rows to insert, in request order (the ids must come back in that order)."""
        return self._rows

    def counter_moves(self) -> list[tuple[int, str, int, int]]:
        """(service, window key, parts taken, limit) of every counter that moves."""
        moves = []
        for (sid, key), used in sorted(self._used.items()):
            if used:
                moves.append((sid, key, used, self._services[sid].limit_of(key)))
        return moves

    def mark_moves(self) -> list[tuple[int, str, datetime]]:
        """(service, scope, last send) of every send mark that moves."""
        return [(sid, scope, last) for (sid, scope), last in sorted(self._marks.items())]

    def charges(self) -> list[MerchantCharge]:
        """What each merchant pays, with a ledger entry per message (ref ``mt:<id>``)."""
        found = []
        for merchant_id, costs in sorted(self._costs.items()):
            first = self._rows[costs[0][0]]
            found.append(
                MerchantCharge(
                    merchant_id=merchant_id,
                    currency=str(first["currency"]),
                    total=sum(cost for _, cost in costs),
                    entries=[
                        (
                            position,
                            cost,
                            f"{self._rows[position]['parts']} part(s) to "
                            f"{self._rows[position]['msisdn']}",
                        )
                        for position, cost in costs
                    ],
                    at=self._rows[costs[-1][0]]["created_at"],
                )
            )
        return found

    # --- 6. the answers ---------------------------------------------------------------------

    def finish(self, ids: Sequence[int]) -> list[SendResult]:
        """The answers, given the ids of ``mt_rows`` in their order."""
        for position, index in enumerate(self._row_request):
            row = self._rows[position]
            self._results[index] = Accepted(
                int(ids[position]),
                row["msisdn"],
                row["parts"],
                row["encoding"],
                row["cost_minor"],
                row["currency"],
                row["operator_id"],
            )
        final: list[SendResult] = []
        for result in self._results:
            if isinstance(result, _Duplicate):
                first = self._results[result.index]
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
