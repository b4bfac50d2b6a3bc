"""What a bulk send is made of: the request, the two kinds of answer, the refusal reasons and
their send_bulk.php words, the metrics, and the two rules that need no database (the IP
allowlist and the approved patterns). Shared by the one-at-a-time path (``bulk.py``) and the
batch path (``bulk_decide.py`` and its stores)."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, Protocol

from prometheus_client import Counter

from smsgate.domain.errors import InvalidPattern, TextError
from smsgate.domain.patterns import PatternSet, compile_patterns
from smsgate.metrics import REGISTRY
from smsgate.services import quotas

if TYPE_CHECKING:
    from smsgate.domain.service_settings import BulkSettings
    from smsgate.services.bulk_inputs import MeasuredText

__all__ = [
    "BULK_ACCEPTED",
    "BULK_REFUSED",
    "LIMIT_REFUSALS",
    "MT_COST_KIND",
    "OPT_OUT_REFUSALS",
    "Accepted",
    "BulkRequest",
    "Refusal",
    "Refused",
    "SendResult",
    "count_result",
    "ip_allowed",
    "text_matches",
]

MT_COST_KIND: Final = "mt_cost"

BULK_ACCEPTED = Counter(
    "smsgate_bulk_accepted",
    "Bulk messages accepted, by channel (legacy, rest, campaign)",
    ["via"],
    registry=REGISTRY,
)
BULK_REFUSED = Counter(
    "smsgate_bulk_refused",
    "Bulk messages refused, by reason",
    ["reason"],
    registry=REGISTRY,
)
OPT_OUT_REFUSALS = Counter(
    "smsgate_bulk_opt_out_refusals",
    "Bulk messages refused because the recipient opted out, by service",
    ["service"],
    registry=REGISTRY,
)


class Refusal(StrEnum):
    """Why a message was not accepted; ``word`` is the send_bulk.php answer."""

    BANNED = "banned"
    INVALID_INPUT = "invalid-input"
    UNKNOWN_SERVICE = "unknown-service"
    IP_NOT_ALLOWED = "ip-not-allowed"
    SERVICE_DISABLED = "service-disabled"
    INVALID_MSISDN = "invalid-msisdn"
    OPTED_OUT = "opted-out"
    NO_ROUTE = "no-route"
    TOO_LONG = "too-many-parts"
    PATTERN = "pattern-mismatch"
    LIMIT_DAY = "limit-day"
    LIMIT_WEEK = "limit-week"
    LIMIT_MONTH = "limit-month"
    LIMIT_DELAY = "limit-delay"
    NO_FUNDS = "insufficient-funds"

    @property
    def word(self) -> str:
        return _WORDS[self]


_WORDS: Final = {
    Refusal.BANNED: "BAN_IP_TEMP",
    Refusal.INVALID_INPUT: "INVALID_INPUT",
    Refusal.UNKNOWN_SERVICE: "INVALID_INPUT",
    Refusal.IP_NOT_ALLOWED: "INVALID_IP",
    Refusal.SERVICE_DISABLED: "SERVICE_DISABLED",
    Refusal.INVALID_MSISDN: "INVALID_MSISDN",
    Refusal.OPTED_OUT: "INVALID_MSISDN",
    Refusal.NO_ROUTE: "INVALID_MSISDN",
    Refusal.TOO_LONG: "INVALID_INPUT",
    Refusal.PATTERN: "INVALID_PATTERN",
    Refusal.LIMIT_DAY: "LIMIT_DAY",
    Refusal.LIMIT_WEEK: "LIMIT_WEEK",
    Refusal.LIMIT_MONTH: "LIMIT_MONTH",
    Refusal.LIMIT_DELAY: "LIMIT_DELAY",
    Refusal.NO_FUNDS: "SERVICE_DISABLED",
}
LIMIT_REFUSALS: Final = {
    quotas.LimitHit.DAY: Refusal.LIMIT_DAY,
    quotas.LimitHit.WEEK: Refusal.LIMIT_WEEK,
    quotas.LimitHit.MONTH: Refusal.LIMIT_MONTH,
    quotas.LimitHit.DELAY: Refusal.LIMIT_DELAY,
}


@dataclass(frozen=True, slots=True)
class BulkRequest:
    """One message to one recipient, as a merchant asked for it."""

    service_id: int
    msisdn: str
    text: str
    # The seed's user_id; None when the caller is already known to own the service (the REST
    # API checks the service against the API key's merchant itself).
    user_id: int | None = None
    client_ip: str = ""
    # False for senders that are not network callers (a campaign run on the gateway's host).
    check_ip: bool = True
    idempotency_key: str | None = None
    via: str = "legacy"  # legacy | rest | campaign
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Accepted:
    mt_id: int
    msisdn: str
    parts: int
    encoding: str
    cost_minor: int
    currency: str
    operator_id: str
    duplicate: bool = False  # an earlier request with the same idempotency key


@dataclass(frozen=True, slots=True)
class Refused:
    reason: Refusal
    detail: str = ""
    retry_at: datetime | None = None  # for limits: when the same message could pass

    @property
    def word(self) -> str:
        return self.reason.word


SendResult = Accepted | Refused


def ip_allowed(address: str, allowlist: Sequence[Any]) -> bool:
    """Empty allowlist: any address. Entries are addresses or networks (CIDR)."""
    if not allowlist:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for entry in allowlist:
        try:
            if ip in ipaddress.ip_network(str(entry), strict=False):
                return True
        except ValueError:
            continue
    return False


class ServiceFacts(Protocol):
    """What a service's own refusals look at: the batch's service view or a stored row."""

    @property
    def type(self) -> str: ...
    @property
    def merchant_id(self) -> int: ...
    @property
    def ip_allowlist(self) -> Sequence[Any]: ...
    @property
    def status(self) -> str: ...
    @property
    def merchant_status(self) -> str: ...


def service_refusal(request: BulkRequest, service: ServiceFacts | None) -> Refused | None:
    """The first refusal a service itself gives a request (docs/bulk.md, "Order of checks"),
    or None. An unknown service, another merchant's and one of another type get the same
    answer, so that nothing tells a caller which service ids exist."""
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
    return None


def text_refusal(
    request: BulkRequest, text: MeasuredText | TextError, settings: BulkSettings
) -> Refused | None:
    """The refusals of the text itself: unencodable, too many parts, no approved pattern."""
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


@functools.lru_cache(maxsize=1024)
def _pattern_set(patterns: tuple[str, ...]) -> PatternSet | None:
    try:
        return compile_patterns(patterns)
    except InvalidPattern:
        return None  # provisioning validates patterns; a broken stored one approves nothing


def text_matches(patterns: Sequence[str], text: str) -> bool:
    """True when the text matches one of the approved patterns (domain/patterns.py), or
    when there are none."""
    compiled = _pattern_set(tuple(patterns))
    return compiled is not None and compiled.matches(text)


def count_result(result: SendResult, via: str) -> None:
    """The accepted/refused metrics for one answered request."""
    if isinstance(result, Accepted):
        if not result.duplicate:
            BULK_ACCEPTED.labels(via).inc()
    else:
        BULK_REFUSED.labels(result.reason.value).inc()
