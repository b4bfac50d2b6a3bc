"""The provisioning document: operators, short numbers, merchants and services, as written in
a TOML file (``smsgate apply FILE.toml``) or posted as JSON (``POST /admin/v1/apply``).

Validation runs in two steps, and every problem is reported, not just the first one, as
``file: entry: key: message`` (``shop.toml: services[1] (id=201): limit_day: ...``, see
domain/config_errors.py):

1. :func:`parse_document` (here) checks each entry on its own: types, ranges, unknown keys,
   amounts against their currency, the rules one entry can break alone.
2. ``domain/provisioning_checks.check_references`` checks the entries together and against
   what is already provisioned (references, uniqueness, keywords per short number).

Keys and defaults are documented in docs/provisioning.md.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import tomllib
import zoneinfo
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from smsgate.domain import money, templates
from smsgate.domain.access_codes import CodeRules
from smsgate.domain.config_errors import (
    DOCUMENT,
    ConfigError,
    ConfigIssue,
    entry_label,
    issues_from_validation_error,
)
from smsgate.domain.errors import DomainError, InvalidCodeRules, InvalidKeyword
from smsgate.domain.routing import normalize_keyword
from smsgate.domain.service_settings import (
    MO_SERVICE_TYPES,
    AccessCodeSettings,
    BulkSettings,
    HttpUrl,
    SafeSettings,
    ServiceSettings,
    SubscriptionSettings,
    TransitSettings,
    VerificationSettings,
)

# ---------------------------------------------------------------------------------------------
# Field types

_OPERATOR_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_NUMBER = re.compile(r"[0-9]{1,32}")
_NUMBER_REF = re.compile(r"([0-9]{1,32})(?:@([A-Za-z0-9][A-Za-z0-9_.-]{0,63}))?")
_LOGIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")


def _matching(pattern: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


def _keyword(value: str) -> str:
    try:
        normalize_keyword(value)
    except InvalidKeyword as exc:
        raise ValueError(str(exc)) from None
    return value


def _ip_network(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address or network (CIDR)") from None
    return value


def _currency(value: str) -> str:
    return money.currency_code(value)


def _share(value: str) -> str:
    money.parse_share(value)
    return value


def _timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone such as Europe/Sofia") from None
    return value


def _signing_secret(value: str) -> str:
    # "whsec_" + base64 (Standard Webhooks) is used as the bytes it stands for; any other
    # secret (a PHP kit's passkey, say) as its UTF-8 bytes (domain/signing.py).
    if value.startswith("whsec_"):
        try:
            raw = base64.b64decode(value[6:], validate=True)
        except ValueError:
            raw = b""
        if len(raw) < 16:
            raise ValueError('a "whsec_" secret is the base64 of at least 16 random bytes')
    elif len(value) < 16 or any(c.isspace() for c in value):
        raise ValueError("a signing secret has at least 16 characters and no spaces")
    return value


OperatorId = Annotated[str, _matching(_OPERATOR_ID, "an id (letters, digits, . _ -; 1-64)")]
ShortNumberText = Annotated[str, _matching(_NUMBER, "a short number (1-32 digits)")]
ShortNumberRef = Annotated[
    str, _matching(_NUMBER_REF, 'a short number ("1851", or "1851@operator" for one operator)')
]
EntityId = Annotated[int, Field(ge=1, le=money.MAX_MINOR)]
Country = Annotated[str, _matching(re.compile(r"[A-Z]{2}"), "an ISO 3166 country code (BG)")]
CurrencyCode = Annotated[str, AfterValidator(_currency), Field(examples=["BGN"])]
AmountText = Annotated[
    str,
    _matching(re.compile(r"[0-9]+(?:\.[0-9]+)?"), 'an amount such as "2.40"'),
    Field(examples=["2.40"]),
]
ShareText = Annotated[str, AfterValidator(_share), Field(examples=["45.5%"])]
IpNetwork = Annotated[str, AfterValidator(_ip_network)]
Status = Literal["active", "disabled"]


class _Entry(BaseModel):
    # strict: a TOML float is not an amount, a string is not an id.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# ---------------------------------------------------------------------------------------------
# Entries


class OperatorEntry(_Entry):
    """``[[operators]]``: a link to an operator's SMSC (smpp) or a push-only operator (http)."""

    id: OperatorId
    country: Country
    kind: Literal["smpp", "http"]
    host: Annotated[str, Field(max_length=255)] = ""
    port: Annotated[int, Field(ge=0, le=65535)] = 0
    # SMPP 3.4 §4.1.1: system_id is at most 16 octets, password 9, system_type 13, each
    # including the terminating NUL.
    system_id: Annotated[str, Field(max_length=15)] = ""
    password: Annotated[str, Field(max_length=8)] = ""
    tps: Annotated[int, Field(ge=1, le=100_000)] = 100
    window: Annotated[int, Field(ge=1, le=10_000)] = 10
    enabled: bool = True
    system_type: Annotated[str, Field(max_length=12)] = ""
    bind_mode: Literal["transceiver", "transmitter_receiver"] = "transceiver"
    enquire_link_seconds: Annotated[int, Field(ge=5, le=3600)] = 30
    reconnect_max_seconds: Annotated[int, Field(ge=1, le=3600)] = 60
    # SMPP 3.4 §5.2.5 (TON 0..6) and §5.2.6 (NPI 0..18); absent: chosen from the sender.
    source_ton: Annotated[int, Field(ge=0, le=6)] | None = None
    source_npi: Annotated[int, Field(ge=0, le=18)] | None = None
    dlr_request: bool = True
    # The base the SMSC writes receipt ids in when it differs from submit_sm_resp's
    # message_id (Kannel's msg-id-type); absent: compared as received.
    dlr_id_format: Literal["hex", "dec"] | None = None
    concat: Literal["udh", "sar", "payload"] = "udh"
    # HTTP intake: the operator presents this secret; only its SHA-256 is stored.
    intake_secret: Annotated[str, Field(min_length=16, max_length=256)] | None = None
    ip_allowlist: list[IpNetwork] = []

    LINK_KEYS: ClassVar[tuple[str, ...]] = (
        "system_type",
        "bind_mode",
        "enquire_link_seconds",
        "reconnect_max_seconds",
        "source_ton",
        "source_npi",
        "dlr_request",
        "dlr_id_format",
        "concat",
    )

    def link_settings(self) -> dict[str, Any]:
        """What goes into ``operators.settings``: the link keys beyond the fixed columns."""
        return {key: getattr(self, key) for key in self.LINK_KEYS}


class ShortNumberEntry(_Entry):
    """``[[short_numbers]]``: a short number on one operator and its tariff for one MO."""

    number: ShortNumberText
    operator: OperatorId
    price: AmountText
    currency: CurrencyCode
    # Percent strings ("45.5%" or "45.5", at most 2 decimals); the platform keeps the rest.
    operator_share: ShareText = "0%"
    merchant_share: ShareText = "100%"
    default_reply: Annotated[str, Field(max_length=1000)] = ""
    vat_note: Annotated[str, Field(max_length=255)] = ""

    @property
    def price_minor(self) -> int:
        return money.parse_amount(self.price, self.currency)

    @property
    def operator_share_bp(self) -> int:
        return money.parse_share(self.operator_share)

    @property
    def merchant_share_bp(self) -> int:
        return money.parse_share(self.merchant_share)


class MerchantEntry(_Entry):
    """``[[merchants]]``: an account; ``id`` is the ``user_id`` of the seed APIs."""

    id: EntityId
    login: Annotated[str, _matching(_LOGIN, "a login (letters, digits, . _ @ -; 1-64)")]
    password: Annotated[str, Field(min_length=8, max_length=1024)]
    api_key: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    currency: CurrencyCode
    # How far the balance may go below zero, in the merchant's currency.
    credit: AmountText = "0"
    timezone: Annotated[str, AfterValidator(_timezone)] = "UTC"
    status: Status = "active"

    @property
    def credit_minor(self) -> int:
        return money.parse_amount(self.credit, self.currency)


class _ServiceCommon(_Entry):
    """The keys every ``[[services]]`` entry has, whatever its type."""

    id: EntityId
    merchant: EntityId
    # One word, matched as domain/routing.py says (case-folded); empty: the number's catch-all.
    keyword: Annotated[str, AfterValidator(_keyword), Field(max_length=64)] = ""
    short_numbers: list[ShortNumberRef] = []
    ip_allowlist: list[IpNetwork] = []
    status: Status = "active"
    result_url: HttpUrl | None = None
    status_url: HttpUrl | None = None
    dlr_url: HttpUrl | None = None
    incoming_url: HttpUrl | None = None
    callback_method: Literal["GET", "POST"] = "POST"
    # Absent: generated on first apply and kept on later applies.
    signing_secret: (
        Annotated[str, AfterValidator(_signing_secret), Field(max_length=128)] | None
    ) = None

    settings_model: ClassVar[type[ServiceSettings]]
    CALLBACK_KEYS: ClassVar[dict[str, str]] = {
        "result": "result_url",
        "status": "status_url",
        "dlr": "dlr_url",
        "incoming": "incoming_url",
    }

    def callback_urls(self) -> dict[str, str]:
        """What goes into ``services.callback_urls``: purpose → URL, for the URLs given."""
        urls = {purpose: getattr(self, key) for purpose, key in self.CALLBACK_KEYS.items()}
        return {purpose: url for purpose, url in urls.items() if url is not None}

    def settings_view(self) -> ServiceSettings:
        """The type's own keys, as the type's settings model."""
        keys = self.settings_model.model_fields
        return self.settings_model.model_validate({k: getattr(self, k) for k in keys})

    def stored_settings(self, currency: str) -> dict[str, Any]:
        """What goes into ``services.settings``: every type key (defaults filled in), and
        ``<key>_minor`` beside each amount key (``None`` when the amount is absent)."""
        settings = self.settings_view().model_dump(mode="json")
        for key in self.settings_model.amount_keys:
            value = settings[key]
            settings[f"{key}_minor"] = (
                None if value is None else money.parse_amount(value, currency)
            )
        return settings


class AccessCodeService(_ServiceCommon, AccessCodeSettings):
    settings_model: ClassVar[type[ServiceSettings]] = AccessCodeSettings
    type: Literal["access_code"]


class BulkService(_ServiceCommon, BulkSettings):
    settings_model: ClassVar[type[ServiceSettings]] = BulkSettings
    type: Literal["bulk"]


class SubscriptionService(_ServiceCommon, SubscriptionSettings):
    settings_model: ClassVar[type[ServiceSettings]] = SubscriptionSettings
    type: Literal["subscription"]


class SafeService(_ServiceCommon, SafeSettings):
    settings_model: ClassVar[type[ServiceSettings]] = SafeSettings
    type: Literal["safe"]


class TransitService(_ServiceCommon, TransitSettings):
    settings_model: ClassVar[type[ServiceSettings]] = TransitSettings
    type: Literal["transit"]


class VerificationService(_ServiceCommon, VerificationSettings):
    settings_model: ClassVar[type[ServiceSettings]] = VerificationSettings
    type: Literal["verification"]


ServiceEntry = Annotated[
    AccessCodeService
    | BulkService
    | SubscriptionService
    | SafeService
    | TransitService
    | VerificationService,
    Field(discriminator="type"),
]


class RouteEntry(_Entry):
    """``[[routes]]``: the operator link that carries MTs to a destination country; without
    ``country`` (or with ``country = "*"``) the default route, for every other destination.
    Among several routes for one destination the lowest ``priority`` wins (docs/bulk.md)."""

    country: Country | Literal["*"] | None = None
    operator: OperatorId
    priority: Annotated[int, Field(ge=0, le=999_999)] = 0

    @property
    def destination(self) -> str | None:
        """The ``routes.country`` value: None for the default route."""
        return None if self.country in (None, "*") else self.country


class ProvisioningDocument(_Entry):
    """The whole file. Every section is optional: entries not named are left as they are."""

    operators: list[OperatorEntry] = []
    short_numbers: list[ShortNumberEntry] = []
    merchants: list[MerchantEntry] = []
    services: list[ServiceEntry] = []
    routes: list[RouteEntry] = []


# ---------------------------------------------------------------------------------------------
# Step 1: each entry on its own


def parse_document(data: Any, *, source: str = "<config>") -> ProvisioningDocument:
    """Validate every entry of a decoded document (TOML or JSON); raise :class:`ConfigError`."""
    if not isinstance(data, Mapping):
        raise ConfigError(source, [ConfigIssue(DOCUMENT, DOCUMENT, "expected a table/object")])
    try:
        document = ProvisioningDocument.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, issues_from_validation_error(exc, data)) from None
    issues = list(_entry_issues(document))
    if issues:
        raise ConfigError(source, issues)
    return document


def parse_toml(text: str, *, source: str = "<config>") -> ProvisioningDocument:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [ConfigIssue(DOCUMENT, "(syntax)", str(exc))]) from None
    return parse_document(data, source=source)


def _entry_issues(document: ProvisioningDocument) -> Iterable[ConfigIssue]:
    """Rules within one entry that a field type alone cannot say."""
    for i, op in enumerate(document.operators):
        label = entry_label("operators", i, {"id": op.id})
        if op.kind == "smpp":
            if not op.host:
                yield ConfigIssue(label, "host", "required for an smpp operator")
            if op.port == 0:
                yield ConfigIssue(label, "port", "required for an smpp operator (1..65535)")
            if not op.system_id:
                yield ConfigIssue(label, "system_id", "required for an smpp operator")
        elif op.intake_secret is None and not op.ip_allowlist:
            # An open intake would let anyone report paid MOs: money.
            yield ConfigIssue(
                label, "intake_secret", "an http operator needs intake_secret or ip_allowlist"
            )
    for i, sn in enumerate(document.short_numbers):
        label = entry_label("short_numbers", i, {"number": sn.number})
        yield from amount_issues(label, "price", sn.price, sn.currency)
        if sn.operator_share_bp + sn.merchant_share_bp > money.BASIS_POINTS:
            yield ConfigIssue(
                label, "merchant_share", "operator_share + merchant_share is more than 100%"
            )
    for i, merchant in enumerate(document.merchants):
        label = entry_label("merchants", i, {"id": merchant.id})
        yield from amount_issues(label, "credit", merchant.credit, merchant.currency)
    for i, service in enumerate(document.services):
        label = entry_label("services", i, {"id": service.id})
        if service.type in MO_SERVICE_TYPES and not service.short_numbers:
            yield ConfigIssue(
                label, "short_numbers", f"a {service.type} service needs at least one"
            )
        if (
            isinstance(service, AccessCodeService)
            and service.code_kind != "uses"
            and service.validity_seconds == 0
        ):
            yield ConfigIssue(
                label, "validity_seconds", f"must be > 0 for code_kind {service.code_kind}"
            )
        if isinstance(service, AccessCodeService):
            yield from _code_rules_issues(label, service)
            yield from _reply_template_issues(label, service)
        if (
            isinstance(service, AccessCodeService | SubscriptionService)
            and "{code}" not in service.reply_template
        ):
            yield ConfigIssue(label, "reply_template", "must contain {code}")


def _code_rules_issues(label: str, service: AccessCodeService) -> Iterable[ConfigIssue]:
    # The rules the code generator itself refuses (domain/access_codes.py).
    if service.code_kind != "uses" and service.validity_seconds == 0:
        return  # reported above, under its own key
    try:
        CodeRules.from_settings(
            kind=service.code_kind,
            length=service.code_length,
            alphabet=service.alphabet,
            validity_seconds=service.validity_seconds,
            uses=service.uses,
            lifetime_seconds=service.lifetime_seconds,
        )
    except InvalidCodeRules as exc:
        yield ConfigIssue(label, "code_kind", str(exc))


def _reply_template_issues(label: str, service: AccessCodeService) -> Iterable[ConfigIssue]:
    """The reply must parse, and its longest rendering must fit in ``max_replies_per_mo`` SMS
    (the code at full length, the longest date, the service's keyword as {service})."""
    if "{code}" not in service.reply_template:
        return  # reported above, under its own key
    validity = service.validity_seconds or service.lifetime_seconds
    try:
        template = templates.parse_template(service.reply_template)
        worst = templates.worst_case_values(
            code_length=service.code_length,
            uses=service.uses,
            validity_minutes=validity // 60 if validity else None,
            service=service.keyword,
        )
        templates.check_fits(template, worst, max_parts=service.max_replies_per_mo)
    except DomainError as exc:
        yield ConfigIssue(label, "reply_template", str(exc))


def amount_issues(label: str, key: str, text: str | None, currency: str) -> Iterable[ConfigIssue]:
    if text is None:
        return
    try:
        money.parse_amount(text, currency)
    except money.MoneyError as exc:
        yield ConfigIssue(label, key, str(exc))
