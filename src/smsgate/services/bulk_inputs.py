"""What the batch decision (``bulk_decide.py``) works on, prepared once per batch: a service
as the checks see it, a request's number and text measured, and the calendar windows of the
quotas found once for every instant they contain."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from smsgate.domain import quota
from smsgate.domain.errors import InvalidMsisdn, TextError
from smsgate.domain.msisdn import Msisdn, normalize_msisdn
from smsgate.domain.service_settings import BulkSettings
from smsgate.domain.text import choose_encoding, count_parts
from smsgate.services import quotas

__all__ = ["PERIODS", "MeasuredText", "ServiceView", "Windows", "measure_text", "parse_number"]

# domain/quota.py's precedence (the longest-lasting limit is named first), which is also the
# order in which every transaction locks a service's counters.
PERIODS: Final = (quota.Period.MONTH, quota.Period.WEEK, quota.Period.DAY)


@dataclass(frozen=True, slots=True)
class ServiceView:
    """A service and its merchant, as the checks see them."""

    merchant_id: int
    type: str
    status: str
    ip_allowlist: list[Any]
    stored: dict[str, Any]
    merchant_status: str
    currency: str
    timezone: str
    settings: BulkSettings | None  # None: settings that no longer validate
    # The limited windows, in PERIODS order: (period, parts allowed).
    limits: tuple[tuple[quota.Period, int], ...] = ()

    @classmethod
    def of(
        cls,
        *,
        kind: str,
        merchant_id: int,
        status: str,
        ip_allowlist: list[Any] | None,
        settings: dict[str, Any] | None,
        merchant_status: str,
        currency: str,
        timezone: str,
    ) -> ServiceView:
        parsed: BulkSettings | None = None
        if kind == "bulk":
            try:
                parsed = BulkSettings.from_stored(settings or {})
            except ValueError:
                parsed = None
        limits: list[tuple[quota.Period, int]] = []
        for period in PERIODS:
            limit: int | None = getattr(parsed, f"limit_{period.value}", None)
            if limit is not None:
                limits.append((period, limit))
        return cls(
            merchant_id=merchant_id,
            type=kind,
            status=status,
            ip_allowlist=list(ip_allowlist or []),
            stored=dict(settings or {}),
            merchant_status=merchant_status,
            currency=currency,
            timezone=timezone,
            settings=parsed,
            limits=tuple(limits),
        )

    @property
    def price_per_part_minor(self) -> int:
        return int(self.stored.get("price_per_part_minor") or 0)

    def limit_of(self, window_key: str) -> int:
        """The limit of a counter key of this service (``d:…``, ``w:…``, ``m:…``)."""
        return next(limit for period, limit in self.limits if period.value[0] == window_key[0])


@dataclass(frozen=True, slots=True)
class MeasuredText:
    encoding: str
    parts: int


def parse_number(raw: str) -> Msisdn | InvalidMsisdn:
    try:
        return normalize_msisdn(raw)
    except InvalidMsisdn as error:
        return error


def measure_text(text: str) -> MeasuredText | TextError:
    try:
        encoding = choose_encoding(text)
        return MeasuredText(encoding.value, count_parts(text, encoding=encoding))
    except TextError as error:
        return error


class Windows:
    """The day, week and month windows of each request, computed once per batch: a window
    found for one instant serves every instant it contains (domain/quota.py does the
    calendar; this only avoids asking it again)."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, quota.Period], list[quota.Window]] = defaultdict(list)

    def of(self, instant: datetime, timezone: str) -> dict[quota.Period, quota.Window]:
        found: dict[quota.Period, quota.Window] = {}
        for period in PERIODS:
            known = self._known[(timezone, period)]
            hit = next((w for w in known if instant in w), None)
            if hit is None:
                hit = quota.window(period, instant, quotas.merchant_zone(timezone))
                known.append(hit)
            found[period] = hit
        return found
