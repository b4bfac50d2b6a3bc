"""The admin JSON API (``/admin/v1``): provisioning, listings, balances, payouts, audit.

Authentication: ``Authorization: Bearer <SMSGATE_ADMIN_TOKEN>``, compared in constant time.
Without a configured token the admin API does not exist: every path answers 404, so an
unconfigured gateway does not even reveal it. A wrong or missing token answers 401.

Listings never carry password hashes, API key hashes, intake secret hashes or signing
secrets; a service's signing secret has its own endpoint, and reading it is audited.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from smsgate import security
from smsgate.api.admin_models import (
    ApplyOut,
    AuditOut,
    BalanceOut,
    ChangeOut,
    ConfigIssueOut,
    CountsOut,
    LedgerEntryOut,
    MerchantOut,
    OperatorOut,
    Page,
    PayoutIn,
    PayoutOut,
    ServiceOut,
    ShortNumberOut,
    SigningSecretOut,
)
from smsgate.api.deps import RuntimeDep, client_ip
from smsgate.api.problems import Problem
from smsgate.domain import money
from smsgate.domain.config_errors import ConfigError
from smsgate.domain.provisioning import ProvisioningDocument, parse_document
from smsgate.services import provisioning
from smsgate.store import audit, ledger
from smsgate.store.models import (
    LedgerEntry,
    Merchant,
    Operator,
    Service,
    ServiceShortNumber,
    ShortNumber,
)

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="AdminToken",
    description="The value of SMSGATE_ADMIN_TOKEN.",
)


async def require_admin(
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    token = runtime.settings.admin_token
    expected = token.get_secret_value() if token is not None else ""
    if not expected:
        raise Problem(404, "Not Found")
    presented = credentials.credentials if credentials is not None else ""
    if not security.constant_time_equals(presented, expected):
        raise Problem(401, "Unauthorized", "Send Authorization: Bearer <admin token>.")


router = APIRouter(prefix="/admin/v1", tags=["admin"], dependencies=[Depends(require_admin)])


# Ids are BIGINT: a larger number is a client error, not a database error.
IdPath = Annotated[int, Path(ge=1, le=money.MAX_MINOR)]
BeforeQuery = Annotated[int | None, Query(ge=1, le=money.MAX_MINOR)]


# ---------------------------------------------------------------------------------------------
# Provisioning


def _inline_refs(schema: Any, defs: dict[str, Any]) -> Any:
    # The request body is validated by hand (to report `entry: key: message`), so its schema
    # is given inline; OpenAPI resolves "#/$defs/..." against the whole document, not here.
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
        out = {k: _inline_refs(v, defs) for k, v in schema.items() if k != "$defs"}
        if isinstance(out.get("discriminator"), dict):
            out["discriminator"] = {"propertyName": out["discriminator"]["propertyName"]}
        return out
    if isinstance(schema, list):
        return [_inline_refs(item, defs) for item in schema]
    return schema


def _document_schema() -> dict[str, Any]:
    schema = ProvisioningDocument.model_json_schema()
    inlined: dict[str, Any] = _inline_refs(schema, schema.get("$defs", {}))
    return inlined


def _config_problem(error: ConfigError) -> Problem:
    return Problem(
        422,
        "Invalid provisioning document",
        "\n".join(error.lines()),
        errors=[ConfigIssueOut(**asdict(i)).model_dump() for i in error.issues],
    )


def _actor(request: Request) -> str:
    return f"admin-api@{client_ip(request)}"


@router.post(
    "/apply",
    response_model=ApplyOut,
    summary="Apply a provisioning document (the TOML structure as JSON)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _document_schema()}},
        }
    },
    responses={422: {"description": "Invalid document: `errors` lists entry, key, message."}},
)
async def apply_document(
    request: Request,
    runtime: RuntimeDep,
    dry_run: Annotated[bool, Query(description="Validate and report, change nothing.")] = False,
) -> ApplyOut:
    try:
        data = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise Problem(400, "Malformed JSON", "The body must be a JSON object.") from None
    try:
        document = parse_document(data, source="request")
        report = await provisioning.apply(
            runtime.sessions,
            document,
            actor=_actor(request),
            now=runtime.clock.now(),
            source="request",
            dry_run=dry_run,
        )
    except ConfigError as exc:
        raise _config_problem(exc) from None
    return ApplyOut(
        changed=report.changed,
        dry_run=report.dry_run,
        counts={k: CountsOut(**asdict(v)) for k, v in report.counts.items()},
        changes=[
            ChangeOut(section=c.section, id=c.entity_id, action=c.action, fields=list(c.fields))
            for c in report.changes
        ],
    )


# ---------------------------------------------------------------------------------------------
# Listings (no secrets)


@router.get("/operators", response_model=Page[OperatorOut])
async def list_operators(runtime: RuntimeDep) -> Page[OperatorOut]:
    async with runtime.read_sessions() as session:
        rows = (await session.scalars(select(Operator).order_by(Operator.id))).all()
    return Page(
        items=[
            OperatorOut(
                id=o.id,
                country=o.country,
                kind=o.kind,
                host=o.host,
                port=o.port,
                system_id=o.system_id,
                tps=o.tps,
                window=o.window,
                enabled=o.enabled,
                settings=o.settings,
                ip_allowlist=o.ip_allowlist,
                has_intake_secret=o.intake_secret_hash is not None,
                created_at=o.created_at,
                updated_at=o.updated_at,
            )
            for o in rows
        ]
    )


@router.get("/short-numbers", response_model=Page[ShortNumberOut])
async def list_short_numbers(runtime: RuntimeDep) -> Page[ShortNumberOut]:
    async with runtime.read_sessions() as session:
        query = select(ShortNumber).order_by(ShortNumber.number, ShortNumber.operator_id)
        rows = (await session.scalars(query)).all()
    return Page(
        items=[
            ShortNumberOut(
                number=s.number,
                operator=s.operator_id,
                price=money.format_amount(s.price_minor, s.currency),
                price_minor=s.price_minor,
                currency=s.currency,
                operator_share_bp=s.operator_share_bp,
                merchant_share_bp=s.merchant_share_bp,
                vat_note=s.vat_note,
                default_reply=s.default_reply,
            )
            for s in rows
        ]
    )


def _merchant_out(m: Merchant) -> MerchantOut:
    return MerchantOut(
        id=m.id,
        login=m.login,
        currency=m.currency,
        credit=money.format_amount(m.credit_minor, m.currency),
        credit_minor=m.credit_minor,
        balance=money.format_amount(m.balance_minor, m.currency),
        balance_minor=m.balance_minor,
        timezone=m.timezone,
        status=m.status,
        has_api_key=m.api_key_hash is not None,
        created_at=m.created_at,
        updated_at=m.updated_at,
    )


@router.get("/merchants", response_model=Page[MerchantOut])
async def list_merchants(runtime: RuntimeDep) -> Page[MerchantOut]:
    async with runtime.read_sessions() as session:
        rows = (await session.scalars(select(Merchant).order_by(Merchant.id))).all()
    return Page(items=[_merchant_out(m) for m in rows])


@router.get("/services", response_model=Page[ServiceOut])
async def list_services(
    runtime: RuntimeDep, merchant: Annotated[int | None, Query(ge=1, le=money.MAX_MINOR)] = None
) -> Page[ServiceOut]:
    async with runtime.read_sessions() as session:
        query = select(Service).order_by(Service.id)
        if merchant is not None:
            query = query.where(Service.merchant_id == merchant)
        rows = (await session.scalars(query)).all()
        link_rows = await session.execute(
            select(ServiceShortNumber.service_id, ShortNumber.number, ShortNumber.operator_id).join(
                ShortNumber, ShortNumber.id == ServiceShortNumber.short_number_id
            )
        )
        links: dict[int, list[str]] = {}
        for service_id, number, operator_id in link_rows:
            links.setdefault(service_id, []).append(f"{number}@{operator_id}")
    return Page(
        items=[
            ServiceOut(
                id=s.id,
                merchant=s.merchant_id,
                type=s.type,
                keyword=s.keyword,
                status=s.status,
                short_numbers=sorted(links.get(s.id, [])),
                ip_allowlist=s.ip_allowlist,
                settings=s.settings,
                callback_urls=s.callback_urls,
                callback_method=s.callback_method,
                created_at=s.created_at,
                updated_at=s.updated_at,
            )
            for s in rows
        ]
    )


@router.get("/services/{service_id}/signing-secret", response_model=SigningSecretOut)
async def reveal_signing_secret(
    service_id: IdPath, request: Request, runtime: RuntimeDep
) -> SigningSecretOut:
    """The secret a merchant verifies callbacks with. Each reading is written to the audit."""
    async with runtime.sessions() as session, session.begin():
        secret = await session.scalar(
            select(Service.signing_secret).where(Service.id == service_id)
        )
        if secret is None:
            raise Problem(404, "Not Found", f"No service {service_id}.")
        audit.record(
            session,
            actor=_actor(request),
            action="reveal",
            entity="service",
            entity_id=str(service_id),
            details={"secret": "signing_secret"},
            at=runtime.clock.now(),
        )
    return SigningSecretOut(service_id=service_id, signing_secret=secret)


# ---------------------------------------------------------------------------------------------
# Money


def _entry_out(e: LedgerEntry) -> LedgerEntryOut:
    return LedgerEntryOut(
        id=e.id,
        account=e.account,
        kind=e.kind,
        amount=money.format_amount(e.amount_minor, e.currency),
        amount_minor=e.amount_minor,
        currency=e.currency,
        ref=e.ref,
        memo=e.memo,
        created_at=e.created_at,
    )


async def _merchant(session: AsyncSession, merchant_id: int) -> Merchant:
    merchant = await session.get(Merchant, merchant_id)
    if merchant is None:
        raise Problem(404, "Not Found", f"No merchant {merchant_id}.")
    return merchant


@router.get("/merchants/{merchant_id}/balance", response_model=BalanceOut)
async def merchant_balance(merchant_id: IdPath, runtime: RuntimeDep) -> BalanceOut:
    async with runtime.read_sessions() as session:
        m = await _merchant(session, merchant_id)
        summed = await ledger.balance(session, merchant_id)
    available = m.balance_minor + m.credit_minor
    return BalanceOut(
        merchant_id=m.id,
        currency=m.currency,
        balance=money.format_amount(m.balance_minor, m.currency),
        balance_minor=m.balance_minor,
        credit=money.format_amount(m.credit_minor, m.currency),
        credit_minor=m.credit_minor,
        available=money.format_amount(available, m.currency),
        available_minor=available,
        ledger_balance_minor=summed,
        consistent=summed == m.balance_minor,
    )


@router.get("/merchants/{merchant_id}/ledger", response_model=Page[LedgerEntryOut])
async def merchant_ledger(
    merchant_id: IdPath,
    runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: BeforeQuery = None,
) -> Page[LedgerEntryOut]:
    async with runtime.read_sessions() as session:
        await _merchant(session, merchant_id)
        rows = await ledger.list_entries(
            session, account=ledger.merchant_account(merchant_id), limit=limit, before_id=before
        )
    next_before = rows[-1].id if len(rows) == limit else None
    return Page(items=[_entry_out(e) for e in rows], next_before=next_before)


@router.post(
    "/merchants/{merchant_id}/payouts",
    response_model=PayoutOut,
    status_code=201,
    responses={
        200: {"model": PayoutOut, "description": "Repeated reference: the first booking."},
        409: {"description": "Insufficient funds, or the reference was used for another amount."},
    },
)
async def book_payout(
    merchant_id: IdPath, body: PayoutIn, request: Request, response: Response, runtime: RuntimeDep
) -> PayoutOut:
    now = runtime.clock.now()
    async with runtime.sessions() as session, session.begin():
        merchant = await _merchant(session, merchant_id)
        if body.currency is not None and body.currency.upper() != merchant.currency:
            raise Problem(
                422, "Wrong currency", f"Merchant {merchant_id} is paid in {merchant.currency}."
            )
        try:
            amount = money.parse_amount(body.amount, merchant.currency)
        except money.MoneyError as exc:
            raise Problem(422, "Invalid amount", str(exc)) from None
        if amount <= 0:
            raise Problem(422, "Invalid amount", "A payout is more than zero.")
        try:
            posting = await ledger.book_payout(
                session,
                merchant_id=merchant_id,
                amount_minor=amount,
                currency=merchant.currency,
                ref=f"payout:{body.reference}",
                now=now,
                memo=body.memo,
            )
        except ledger.InsufficientFunds as exc:
            raise Problem(
                409,
                "Insufficient funds",
                f"The balance is {money.format_amount(exc.balance_minor, merchant.currency)}"
                f" {merchant.currency}; a payout never goes below zero.",
            ) from None
        except ledger.LedgerConflict:
            raise Problem(
                409, "Reference already used", "This reference was booked with another amount."
            ) from None
        if posting.created:
            audit.record(
                session,
                actor=_actor(request),
                action="payout",
                entity="merchant",
                entity_id=str(merchant_id),
                details={
                    "amount_minor": amount,
                    "currency": merchant.currency,
                    "reference": body.reference,
                },
                at=now,
            )
        entry = await session.get(LedgerEntry, posting.entry_id)
        assert entry is not None
    response.status_code = 201 if posting.created else 200
    return PayoutOut(
        created=posting.created,
        entry=_entry_out(entry),
        balance=money.format_amount(posting.balance_minor, merchant.currency),
        balance_minor=posting.balance_minor,
    )


# ---------------------------------------------------------------------------------------------
# Audit


@router.get("/audit", response_model=Page[AuditOut])
async def list_audit(
    runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: BeforeQuery = None,
    entity: Annotated[str | None, Query(max_length=32)] = None,
    entity_id: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[AuditOut]:
    async with runtime.read_sessions() as session:
        records = await audit.list_records(
            session, limit=limit, before_id=before, entity=entity, entity_id=entity_id
        )
    next_before = records[-1].id if len(records) == limit else None
    return Page(items=[AuditOut(**asdict(r)) for r in records], next_before=next_before)
