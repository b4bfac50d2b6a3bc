"""Applying a provisioning document on SQLite and PostgreSQL: idempotent, audited, atomic."""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from smsgate import security
from smsgate.domain.config_errors import ConfigError
from smsgate.domain.provisioning import parse_document
from smsgate.services.provisioning import ApplyReport, apply, read_file
from smsgate.store import ledger
from smsgate.store.audit import list_records
from smsgate.store.models import (
    AuditLog,
    Merchant,
    Operator,
    Service,
    ServiceShortNumber,
    ShortNumber,
)

SAMPLE = Path(__file__).parents[2] / "data" / "design_sample.toml"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)

Sessions = async_sessionmaker[AsyncSession]


def sample() -> dict[str, Any]:
    return tomllib.loads(SAMPLE.read_text())


async def run(
    sessions: Sessions, data: dict[str, Any], *, now: datetime = NOW, dry_run: bool = False
) -> ApplyReport:
    document = parse_document(data, source="test.toml")
    return await apply(
        sessions, document, actor="tester", now=now, source="test.toml", dry_run=dry_run
    )


SECTIONS = ("operators", "short_numbers", "merchants", "services")


def counts(report: ApplyReport) -> dict[str, tuple[int, int, int]]:
    return {
        k: (v.created, v.updated, v.unchanged) for k, v in report.counts.items() if k in SECTIONS
    }


async def audit_rows(sessions: Sessions) -> list[AuditLog]:
    async with sessions() as session:
        return list((await session.scalars(select(AuditLog).order_by(AuditLog.id))).all())


async def links(sessions: Sessions, service_id: int) -> set[str]:
    async with sessions() as session:
        rows = await session.execute(
            select(ShortNumber.number, ShortNumber.operator_id)
            .join(ServiceShortNumber, ServiceShortNumber.short_number_id == ShortNumber.id)
            .where(ServiceShortNumber.service_id == service_id)
        )
        return {f"{n}@{o}" for n, o in rows}


async def test_design_sample_is_provisioned(sessionmaker: Sessions) -> None:
    report = await apply(sessionmaker, read_file(SAMPLE), actor="tester", now=NOW)
    assert counts(report) == {
        "operators": (1, 0, 0),
        "short_numbers": (1, 0, 0),
        "merchants": (1, 0, 0),
        "services": (2, 0, 0),
    }
    async with sessionmaker() as session:
        operator = await session.get(Operator, "sim-bg")
        assert operator is not None
        assert (operator.kind, operator.host, operator.port, operator.system_id) == (
            "smpp",
            "127.0.0.1",
            2775,
            "smsgate",
        )
        assert (operator.password, operator.tps, operator.window) == ("secret", 200, 10)
        assert operator.settings["bind_mode"] == "transceiver"
        assert operator.intake_secret_hash is None
        number = (await session.scalars(select(ShortNumber))).one()
        assert (number.number, number.price_minor, number.currency) == ("1851", 240, "BGN")
        merchant = await session.get(Merchant, 1)
        assert merchant is not None
        assert (merchant.login, merchant.currency, merchant.credit_minor) == ("shop", "BGN", 5000)
        assert merchant.balance_minor == 0
        assert security.verify_password(merchant.password_hash, "change-me")
        assert merchant.api_key_hash == security.hash_api_key("k-123")
        access = await session.get(Service, 102)
        bulk = await session.get(Service, 201)
        assert access is not None
        assert bulk is not None
        assert (access.type, access.keyword, access.merchant_id) == ("access_code", "KOD", 1)
        assert access.settings["code_length"] == 8
        assert bulk.settings["price_per_part_minor"] == 5
        assert bulk.settings["limit_day"] == 1000
        assert bulk.callback_urls == {"dlr": "https://shop.example/dlr"}
        assert access.signing_secret.startswith("whsec_")
        assert access.signing_secret != bulk.signing_secret
        assert (access.created_at, access.updated_at) == (NOW, NOW)
    assert await links(sessionmaker, 102) == {"1851@sim-bg"}
    assert await links(sessionmaker, 201) == set()
    rows = await audit_rows(sessionmaker)
    assert [(r.action, r.entity, r.entity_id) for r in rows] == [
        ("create", "operator", "sim-bg"),
        ("create", "short_number", "1851@sim-bg"),
        ("create", "merchant", "1"),
        ("create", "service", "102"),
        ("create", "service", "201"),
    ]
    assert all(r.actor == "tester" and r.at == NOW for r in rows)


async def test_applying_twice_changes_nothing(sessionmaker: Sessions) -> None:
    await run(sessionmaker, sample())
    async with sessionmaker() as session:
        before = {
            s.id: (s.signing_secret, s.updated_at) for s in await session.scalars(select(Service))
        }
        password_hash = (await session.get(Merchant, 1)).password_hash  # type: ignore[union-attr]
    report = await run(sessionmaker, sample(), now=LATER)
    assert not report.changed
    assert counts(report) == {
        "operators": (0, 0, 1),
        "short_numbers": (0, 0, 1),
        "merchants": (0, 0, 1),
        "services": (0, 0, 2),
    }
    assert len(await audit_rows(sessionmaker)) == 5
    async with sessionmaker() as session:
        after = {
            s.id: (s.signing_secret, s.updated_at) for s in await session.scalars(select(Service))
        }
        merchant = await session.get(Merchant, 1)
        assert merchant is not None
        # The password still verifies, so it was not hashed again (a new salt would differ).
        assert merchant.password_hash == password_hash
        assert merchant.updated_at == NOW
    assert after == before


async def test_a_change_updates_one_entity_and_audits_it(sessionmaker: Sessions) -> None:
    await run(sessionmaker, sample())
    data = sample()
    data["services"][1]["limit_day"] = 2000
    data["services"][1]["patterns"] = ["Your invoice {*} is ready"]
    report = await run(sessionmaker, data, now=LATER)
    assert counts(report)["services"] == (0, 1, 1)
    assert [(c.section, c.entity_id, c.action, c.fields) for c in report.changes] == [
        ("services", "201", "update", ("settings",))
    ]
    last = (await audit_rows(sessionmaker))[-1]
    assert (last.action, last.entity, last.entity_id, last.at) == (
        "update",
        "service",
        "201",
        LATER,
    )
    assert last.details == {
        "changes": {
            "settings.limit_day": {"old": 1000, "new": 2000},
            "settings.patterns": {"old": [], "new": ["Your invoice {*} is ready"]},
        },
        "secrets_changed": [],
    }
    async with sessionmaker() as session:
        service = await session.get(Service, 201)
        assert service is not None
        assert service.settings["limit_day"] == 2000
        assert service.updated_at == LATER


async def test_secret_changes_are_audited_without_values(sessionmaker: Sessions) -> None:
    await run(sessionmaker, sample())
    data = sample()
    data["merchants"][0]["password"] = "new-password-1"
    data["merchants"][0]["api_key"] = "k-456"
    data["operators"][0]["password"] = "secret2"
    data["services"][0]["signing_secret"] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    report = await run(sessionmaker, data, now=LATER)
    assert {(c.section, c.fields) for c in report.changes} == {
        ("operators", ("password",)),
        ("merchants", ("api_key", "password")),
        ("services", ("signing_secret",)),
    }
    rows = await audit_rows(sessionmaker)
    assert [r.details["secrets_changed"] for r in rows[-3:]] == [
        ["password"],
        ["api_key", "password"],
        ["signing_secret"],
    ]
    async with sessionmaker() as session:
        merchant = await session.get(Merchant, 1)
        service = await session.get(Service, 102)
        assert merchant is not None
        assert service is not None
        assert security.verify_password(merchant.password_hash, "new-password-1")
        assert merchant.api_key_hash == security.hash_api_key("k-456")
        assert service.signing_secret == "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        secrets = [
            "change-me",
            "new-password-1",
            "k-123",
            "k-456",
            "secret2",
            merchant.password_hash,
            merchant.api_key_hash,
            security.hash_api_key("k-123"),
            service.signing_secret,
        ]
        generated = (await session.get(Service, 201)).signing_secret  # type: ignore[union-attr]
    everything = json.dumps([r.details for r in rows])
    for secret in [*secrets, generated]:
        assert secret not in everything
    assert '"secret"' not in everything  # the operator's password value


async def test_signing_secret_is_generated_once_and_kept(sessionmaker: Sessions) -> None:
    await run(sessionmaker, sample())
    async with sessionmaker() as session:
        first = (await session.get(Service, 102)).signing_secret  # type: ignore[union-attr]
    data = sample()
    data["services"][0]["status"] = "disabled"  # an update that does not name the secret
    await run(sessionmaker, data, now=LATER)
    async with sessionmaker() as session:
        service = await session.get(Service, 102)
        assert service is not None
        assert service.status == "disabled"
        assert service.signing_secret == first


async def test_short_number_links_follow_the_document(sessionmaker: Sessions) -> None:
    data = sample()
    data["short_numbers"].append(
        {"number": "1852", "operator": "sim-bg", "price": "4.80", "currency": "BGN"}
    )
    await run(sessionmaker, data)
    data["services"][0]["short_numbers"] = ["1852"]
    report = await run(sessionmaker, data, now=LATER)
    assert [(c.entity_id, c.fields) for c in report.changes] == [("102", ("short_numbers",))]
    assert await links(sessionmaker, 102) == {"1852@sim-bg"}
    last = (await audit_rows(sessionmaker))[-1]
    assert last.details["changes"] == {
        "short_numbers": {"old": ["1851@sim-bg"], "new": ["1852@sim-bg"]}
    }
    data["services"][0]["short_numbers"] = ["1851", "1852@sim-bg"]
    await run(sessionmaker, data, now=LATER)
    assert await links(sessionmaker, 102) == {"1851@sim-bg", "1852@sim-bg"}


async def test_a_partial_document_leans_on_what_exists(sessionmaker: Sessions) -> None:
    await run(sessionmaker, sample())
    extra = {
        "services": [
            {
                "id": 103,
                "merchant": 1,
                "type": "subscription",
                "keyword": "SUB",
                "short_numbers": ["1851"],
                "status_url": "https://shop.example/status",
                "result_url": "https://shop.example/result",
            }
        ]
    }
    report = await run(sessionmaker, extra, now=LATER)
    assert counts(report)["services"] == (1, 0, 0)
    assert counts(report)["merchants"] == (0, 0, 0)  # not named, not touched
    assert await links(sessionmaker, 103) == {"1851@sim-bg"}
    # The keyword space of 1851 includes what is provisioned.
    extra["services"][0]["id"] = 104
    extra["services"][0]["keyword"] = "kod"
    with pytest.raises(ConfigError) as caught:
        await run(sessionmaker, extra)
    assert caught.value.lines() == [
        "test.toml: services[0] (id=104): keyword: 'kod' on 1851 is already used by service 102"
    ]


async def test_invalid_references_write_nothing(sessionmaker: Sessions) -> None:
    data = sample()
    data["services"][0]["merchant"] = 5
    with pytest.raises(ConfigError) as caught:
        await run(sessionmaker, data)
    assert caught.value.lines() == [
        "test.toml: services[0] (id=102): merchant: no merchant with id 5"
    ]
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Operator)) == 0
    assert await audit_rows(sessionmaker) == []


async def test_a_database_error_rolls_everything_back(sessionmaker: Sessions) -> None:
    data = sample()
    data["merchants"].append(dict(data["merchants"][0], id=2, login="other", api_key="k-2"))
    await run(sessionmaker, data)
    # Swapping two logins passes validation but violates the unique index mid-way.
    data["operators"][0]["tps"] = 300
    data["merchants"][0]["login"], data["merchants"][1]["login"] = "other", "shop"
    with pytest.raises(IntegrityError):
        await run(sessionmaker, data, now=LATER)
    async with sessionmaker() as session:
        operator = await session.get(Operator, "sim-bg")
        assert operator is not None
        assert operator.tps == 200  # the operator's update went with the rest
    assert len(await audit_rows(sessionmaker)) == 6


async def test_api_key_taken_by_another_merchant(sessionmaker: Sessions) -> None:
    await run(sessionmaker, sample())
    other = {
        "merchants": [
            {
                "id": 2,
                "login": "other",
                "password": "pass-word-2",
                "api_key": "k-123",
                "currency": "BGN",
            }
        ]
    }
    with pytest.raises(ConfigError) as caught:
        await run(sessionmaker, other)
    assert caught.value.lines() == ["test.toml: merchants[0] (id=2): api_key: taken by merchant 1"]
    assert "k-123" not in str(caught.value)


async def test_currency_is_fixed_once_money_moved(sessionmaker: Sessions) -> None:
    data = {
        "merchants": [
            {"id": 1, "login": "shop", "password": "change-me", "currency": "BGN", "credit": "1.00"}
        ]
    }
    await run(sessionmaker, data)
    data["merchants"][0]["currency"] = "EUR"
    await run(sessionmaker, data)  # no money yet: allowed
    async with sessionmaker() as session, session.begin():
        await ledger.credit_merchant(
            session,
            merchant_id=1,
            amount_minor=5,
            currency="EUR",
            kind="adjustment",
            ref="x",
            now=NOW,
        )
    data["merchants"][0]["currency"] = "BGN"
    with pytest.raises(ConfigError) as caught:
        await run(sessionmaker, data)
    assert caught.value.lines() == [
        "test.toml: merchants[0] (id=1): currency: cannot change EUR to BGN: the merchant has "
        "ledger entries"
    ]


async def test_dry_run_reports_and_changes_nothing(sessionmaker: Sessions) -> None:
    report = await run(sessionmaker, sample(), dry_run=True)
    assert report.dry_run
    assert counts(report)["services"] == (2, 0, 0)
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Service)) == 0
    assert await audit_rows(sessionmaker) == []


async def test_audit_listing(sessionmaker: Sessions) -> None:
    await run(sessionmaker, sample())
    async with sessionmaker() as session:
        newest = await list_records(session, limit=2)
        assert [r.entity_id for r in newest] == ["201", "102"]
        older = await list_records(session, limit=10, before_id=newest[-1].id)
        assert [r.entity for r in older] == ["merchant", "short_number", "operator"]
        only = await list_records(session, entity="merchant", entity_id="1")
        assert [(r.action, r.details["secrets_set"]) for r in only] == [
            ("create", ["api_key", "password"])
        ]
