"""Applying a provisioning document: an idempotent upsert, in one transaction.

Each entry of the document is created, or updated to match, or left alone when it already
matches; entities the document does not name are not touched (nothing is deleted). Every
created or updated entity gets an audit row naming what changed, never a secret's value.
Applying the same document twice changes nothing the second time and writes no audit row.

Secrets: a merchant's password is stored as an argon2 hash and re-hashed only when the given
password no longer verifies against it; API keys and operator intake secrets as SHA-256;
a service's signing secret as given, or generated on creation when absent and kept after.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from smsgate import security
from smsgate.domain.config_errors import ConfigError, ConfigIssue, entry_label
from smsgate.domain.provisioning import (
    MerchantEntry,
    OperatorEntry,
    ProvisioningDocument,
    RouteEntry,
    ServiceEntry,
    ShortNumberEntry,
    parse_toml,
)
from smsgate.domain.provisioning_checks import Catalog, check_references, resolve_short_numbers
from smsgate.store import audit
from smsgate.store.ledger import merchant_account
from smsgate.store.models import (
    LedgerEntry,
    Merchant,
    Operator,
    Route,
    Service,
    ServiceShortNumber,
    ShortNumber,
)

ENTITIES = ("operators", "short_numbers", "merchants", "services")
# The audit log's name for an entity of each section.
AUDIT_ENTITY = {
    "operators": "operator",
    "short_numbers": "short_number",
    "merchants": "merchant",
    "services": "service",
    "routes": "route",
}


@dataclass
class EntityCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass(frozen=True, slots=True)
class Change:
    section: str
    entity_id: str
    action: Literal["create", "update"]
    fields: tuple[str, ...]


@dataclass
class ApplyReport:
    counts: dict[str, EntityCounts] = field(
        default_factory=lambda: {section: EntityCounts() for section in ENTITIES}
    )
    changes: list[Change] = field(default_factory=list)
    dry_run: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def read_file(path: Path) -> ProvisioningDocument:
    """Read and validate a TOML file (step 1; references are checked when applied)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), [ConfigIssue("(document)", "(encoding)", str(exc))]) from None
    return parse_toml(text, source=str(path))


async def apply(
    sessions: async_sessionmaker[AsyncSession],
    document: ProvisioningDocument,
    *,
    actor: str,
    now: datetime,
    source: str = "<config>",
    dry_run: bool = False,
) -> ApplyReport:
    """Apply ``document`` in a transaction of its own (rolled back when ``dry_run``)."""
    async with sessions() as session:
        try:
            report = await apply_in_session(session, document, actor=actor, now=now, source=source)
        except BaseException:
            await session.rollback()
            raise
        if dry_run:
            await session.rollback()
            report.dry_run = True
        else:
            await session.commit()
        return report


async def apply_in_session(
    session: AsyncSession,
    document: ProvisioningDocument,
    *,
    actor: str,
    now: datetime,
    source: str = "<config>",
) -> ApplyReport:
    """Apply ``document`` within the caller's transaction; raise ConfigError if invalid."""
    state = await _State.load(session)
    check_references(document, state.catalog(), source=source)
    issues = await _database_issues(session, document, state)
    if issues:
        raise ConfigError(source, issues)
    applier = _Applier(session, state, actor=actor, now=now)
    for operator in document.operators:
        await applier.operator(operator)
    await session.flush()
    for short_number in document.short_numbers:
        await applier.short_number(short_number)
    await session.flush()
    merchant_currency = {m.id: m.currency for m in state.merchants.values()}
    for merchant in document.merchants:
        await applier.merchant(merchant)
        merchant_currency[merchant.id] = merchant.currency
    await session.flush()
    for service in document.services:
        await applier.service(service, merchant_currency[service.merchant])
    await session.flush()
    for route in document.routes:
        await applier.route(route)
    await session.flush()
    return applier.report


@dataclass
class _State:
    """Everything provisioned so far, loaded once (provisioning tables are small)."""

    operators: dict[str, Operator]
    short_numbers: dict[tuple[str, str], ShortNumber]
    merchants: dict[int, Merchant]
    services: dict[int, Service]
    links: dict[int, set[int]]  # service id -> short number ids
    routes: dict[tuple[str | None, str], Route]  # (country, operator id) -> route

    @classmethod
    async def load(cls, session: AsyncSession) -> _State:
        links: dict[int, set[int]] = defaultdict(set)
        for link in await session.scalars(select(ServiceShortNumber)):
            links[link.service_id].add(link.short_number_id)
        return cls(
            operators={o.id: o for o in await session.scalars(select(Operator))},
            short_numbers={
                (s.operator_id, s.number): s for s in await session.scalars(select(ShortNumber))
            },
            merchants={m.id: m for m in await session.scalars(select(Merchant))},
            services={s.id: s for s in await session.scalars(select(Service))},
            links=links,
            routes={(r.country, r.operator_id): r for r in await session.scalars(select(Route))},
        )

    def catalog(self) -> Catalog:
        by_id = {s.id: (s.operator_id, s.number) for s in self.short_numbers.values()}
        return Catalog(
            operators=frozenset(self.operators),
            short_numbers={key: s.currency for key, s in self.short_numbers.items()},
            merchants={m.id: (m.login, m.currency) for m in self.merchants.values()},
            services={
                s.id: (s.keyword, frozenset(by_id[i] for i in self.links.get(s.id, ())))
                for s in self.services.values()
            },
        )


async def _database_issues(
    session: AsyncSession, document: ProvisioningDocument, state: _State
) -> list[ConfigIssue]:
    """What only the database can refuse: a taken API key, a currency under existing money."""
    issues: list[ConfigIssue] = []
    listed = {m.id for m in document.merchants}
    key_owner = {m.api_key_hash: m.id for m in state.merchants.values() if m.api_key_hash}
    for i, merchant in enumerate(document.merchants):
        label = entry_label("merchants", i, {"id": merchant.id})
        if merchant.api_key is not None:
            owner = key_owner.get(security.hash_api_key(merchant.api_key))
            if owner is not None and owner != merchant.id and owner not in listed:
                issues.append(ConfigIssue(label, "api_key", f"taken by merchant {owner}"))
        row = state.merchants.get(merchant.id)
        if row is not None and row.currency != merchant.currency:
            entries = await session.scalar(
                select(func.count())
                .select_from(LedgerEntry)
                .where(LedgerEntry.account == merchant_account(merchant.id))
            )
            if entries or row.balance_minor:
                issues.append(
                    ConfigIssue(
                        label,
                        "currency",
                        f"cannot change {row.currency} to {merchant.currency}: "
                        "the merchant has ledger entries",
                    )
                )
    return issues


def _flatten(values: Mapping[str, Any]) -> dict[str, Any]:
    """One level of dict columns spelled out (``settings.limit_day``) for a readable diff."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            for inner, inner_value in value.items():
                flat[f"{key}.{inner}"] = inner_value
            if not value:
                flat[key] = {}
        else:
            flat[key] = value
    return flat


def _diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    before, after = _flatten(old), _flatten(new)
    return {
        key: {"old": before.get(key), "new": after.get(key)}
        for key in sorted(before.keys() | after.keys())
        if before.get(key) != after.get(key)
    }


class _Applier:
    def __init__(self, session: AsyncSession, state: _State, *, actor: str, now: datetime):
        self.session = session
        self.state = state
        self.actor = actor
        self.now = now
        self.report = ApplyReport()

    def _upsert(
        self,
        section: str,
        entity_id: str,
        row: Any | None,
        make: Callable[..., Any],
        columns: dict[str, Any],
        secrets: dict[str, Any],
        secret_names: list[str],
        extra: tuple[dict[str, Any], dict[str, Any]] = ({}, {}),
    ) -> Any:
        """Create the row, or update the columns that differ; count and audit either.

        ``secret_names`` names the secrets (by their key in the file) that this call sets:
        those present on creation, those that changed on update. Their values are never
        audited.

        ``extra`` is (current, wanted) of what is compared and audited beside the columns
        but stored elsewhere (a service's short number links).
        """
        counts = self.report.counts[section]
        current_extra, wanted_extra = extra
        wanted = {**columns, **wanted_extra}
        if row is None:
            row = make(**columns, **secrets, created_at=self.now, updated_at=self.now)
            self.session.add(row)
            details: dict[str, Any] = {"values": wanted, "secrets_set": sorted(secret_names)}
            self._record(
                section, entity_id, "create", sorted(wanted) + sorted(secret_names), details
            )
            counts.created += 1
            return row
        changes = _diff({**{key: getattr(row, key) for key in columns}, **current_extra}, wanted)
        if not changes and not secret_names:
            counts.unchanged += 1
            return row
        for key, value in {**columns, **secrets}.items():
            if getattr(row, key) != value:
                setattr(row, key, value)
        row.updated_at = self.now
        details = {"changes": changes, "secrets_changed": sorted(secret_names)}
        fields = sorted({key.split(".")[0] for key in changes}) + sorted(secret_names)
        self._record(section, entity_id, "update", fields, details)
        counts.updated += 1
        return row

    def _record(
        self,
        section: str,
        entity_id: str,
        action: Literal["create", "update"],
        fields: list[str],
        details: dict[str, Any],
    ) -> None:
        audit.record(
            self.session,
            actor=self.actor,
            action=action,
            entity=AUDIT_ENTITY[section],
            entity_id=entity_id,
            details=details,
            at=self.now,
        )
        self.report.changes.append(Change(section, entity_id, action, tuple(fields)))

    async def operator(self, entry: OperatorEntry) -> None:
        row = self.state.operators.get(entry.id)
        public = {
            "country": entry.country,
            "kind": entry.kind,
            "host": entry.host,
            "port": entry.port,
            "system_id": entry.system_id,
            "tps": entry.tps,
            "window": entry.window,
            "settings": entry.link_settings(),
            "ip_allowlist": list(entry.ip_allowlist),
            "enabled": entry.enabled,
        }
        intake_hash = (
            None if entry.intake_secret is None else security.hash_token(entry.intake_secret)
        )
        secrets = {"password": entry.password, "intake_secret_hash": intake_hash}
        if row is None:
            changed = [k for k in ("password", "intake_secret") if getattr(entry, k)]
        else:
            differ = [k for k, v in secrets.items() if getattr(row, k) != v]
            changed = ["intake_secret" if k == "intake_secret_hash" else k for k in differ]
        row = self._upsert(
            "operators",
            entry.id,
            row,
            lambda **kw: Operator(id=entry.id, **kw),
            public,
            secrets,
            changed,
        )
        self.state.operators[entry.id] = row

    async def short_number(self, entry: ShortNumberEntry) -> None:
        key = (entry.operator, entry.number)
        row = self.state.short_numbers.get(key)
        public = {
            "price_minor": entry.price_minor,
            "currency": entry.currency,
            "operator_share_bp": entry.operator_share_bp,
            "merchant_share_bp": entry.merchant_share_bp,
            "vat_note": entry.vat_note,
            "default_reply": entry.default_reply,
        }
        row = self._upsert(
            "short_numbers",
            f"{entry.number}@{entry.operator}",
            row,
            lambda **kw: ShortNumber(number=entry.number, operator_id=entry.operator, **kw),
            public,
            {},
            [],
        )
        self.state.short_numbers[key] = row

    async def merchant(self, entry: MerchantEntry) -> None:
        row = self.state.merchants.get(entry.id)
        public = {
            "login": entry.login,
            "currency": entry.currency,
            "credit_minor": entry.credit_minor,
            "timezone": entry.timezone,
            "status": entry.status,
        }
        api_key_hash = None if entry.api_key is None else security.hash_api_key(entry.api_key)
        changed: list[str] = []
        if row is not None and await asyncio.to_thread(
            security.verify_password, row.password_hash, entry.password
        ):
            password_hash = row.password_hash
        else:
            # Hashing takes tens of milliseconds of CPU by design: off the event loop.
            password_hash = await asyncio.to_thread(security.hash_password, entry.password)
            changed.append("password")
        if row is not None and row.api_key_hash != api_key_hash:
            changed.append("api_key")
        secrets = {"password_hash": password_hash, "api_key_hash": api_key_hash}
        if row is None:
            changed = ["password"] + (["api_key"] if entry.api_key is not None else [])
        row = self._upsert(
            "merchants",
            str(entry.id),
            row,
            lambda **kw: Merchant(id=entry.id, balance_minor=0, **kw),
            public,
            secrets,
            changed,
        )
        self.state.merchants[entry.id] = row

    async def service(self, entry: ServiceEntry, currency: str) -> None:
        row = self.state.services.get(entry.id)
        columns = {
            "merchant_id": entry.merchant,
            "type": entry.type,
            "keyword": entry.keyword,
            "status": entry.status,
            "ip_allowlist": list(entry.ip_allowlist),
            "settings": entry.stored_settings(currency),
            "callback_urls": entry.callback_urls(),
            "callback_method": entry.callback_method,
        }
        if entry.signing_secret is not None:
            secret = entry.signing_secret
        elif row is not None:
            secret = row.signing_secret
        else:
            secret = security.generate_signing_secret()
        changed = ["signing_secret"] if row is None or row.signing_secret != secret else []

        pairs, _missing = resolve_short_numbers(entry.short_numbers, self.state.short_numbers)
        wanted_ids = {self.state.short_numbers[pair].id for pair in pairs}
        have_ids = self.state.links.get(entry.id, set())
        names = {s.id: f"{s.number}@{s.operator_id}" for s in self.state.short_numbers.values()}
        links = (
            {"short_numbers": sorted(names[i] for i in have_ids)},
            {"short_numbers": sorted(names[i] for i in wanted_ids)},
        )
        row = self._upsert(
            "services",
            str(entry.id),
            row,
            lambda **kw: Service(id=entry.id, **kw),
            columns,
            {"signing_secret": secret},
            changed,
            links,
        )
        for short_number_id in sorted(wanted_ids - have_ids):
            self.session.add(
                ServiceShortNumber(service_id=entry.id, short_number_id=short_number_id)
            )
        for short_number_id in sorted(have_ids - wanted_ids):
            link = await self.session.get(ServiceShortNumber, (entry.id, short_number_id))
            if link is not None:
                await self.session.delete(link)
        self.state.services[entry.id] = row
        self.state.links[entry.id] = wanted_ids

    async def route(self, entry: RouteEntry) -> None:
        """A route is named by (destination, operator); its priority is what may change."""
        key = (entry.destination, entry.operator)
        entity_id = f"{entry.destination or '*'}->{entry.operator}"
        # Counted only when a document has routes, so reports of route-less files keep
        # their four sections.
        counts = self.report.counts.setdefault("routes", EntityCounts())
        row = self.state.routes.get(key)
        if row is None:
            row = Route(country=entry.destination, operator_id=entry.operator)
            row.priority = entry.priority
            self.session.add(row)
            self.state.routes[key] = row
            values = {"country": entry.country or "*", "operator": entry.operator}
            self._record(
                "routes",
                entity_id,
                "create",
                ["country", "operator", "priority"],
                {"values": {**values, "priority": entry.priority}, "secrets_set": []},
            )
            counts.created += 1
        elif row.priority != entry.priority:
            changes = {"priority": {"old": row.priority, "new": entry.priority}}
            row.priority = entry.priority
            self._record("routes", entity_id, "update", ["priority"], {"changes": changes})
            counts.updated += 1
        else:
            counts.unchanged += 1
