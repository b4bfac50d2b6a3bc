"""The schema: every table smsgate keeps, declared once.

Alembic migrations under ``store/migrations`` must produce exactly this schema; a test compares
them on SQLite and PostgreSQL.

Money columns end in ``_minor`` and hold integer minor units (stotinki, kopecks, cents) beside a
``currency``; there is no float money anywhere.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from smsgate.store.types import BigIntPK, UTCDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {  # noqa: RUF012 (SQLAlchemy reads it as a class attribute)
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


class Operator(Base):
    """A mobile operator (or telephony system) we link to, over SMPP or HTTP."""

    __tablename__ = "operators"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    country: Mapped[str] = mapped_column(String(2))
    kind: Mapped[str] = mapped_column(String(16))  # smpp | http
    host: Mapped[str] = mapped_column(String(255), default="")
    port: Mapped[int] = mapped_column(Integer, default=0)
    system_id: Mapped[str] = mapped_column(String(16), default="")
    # The credential we present to the operator's SMSC: it must be usable, so it is not hashed.
    password: Mapped[str] = mapped_column(String(64), default="")
    tps: Mapped[int] = mapped_column(Integer, default=100)
    window: Mapped[int] = mapped_column(Integer, default=10)
    # Link details beyond the fixed keys (system_type, bind_mode, dlr_id_format, concat, ...).
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # HTTP intake: the operator authenticates with this secret (stored hashed).
    intake_secret_hash: Mapped[str | None] = mapped_column(String(128), default=None)
    ip_allowlist: Mapped[list[Any]] = mapped_column(default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ShortNumber(Base):
    """A short number on one operator, with its tariff for one MO."""

    __tablename__ = "short_numbers"
    __table_args__ = (UniqueConstraint("operator_id", "number"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    number: Mapped[str] = mapped_column(String(32), index=True)
    operator_id: Mapped[str] = mapped_column(ForeignKey("operators.id"))
    price_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # Shares of the gross price in basis points (1/100 of a percent); the rest is ours.
    operator_share_bp: Mapped[int] = mapped_column(Integer, default=0)
    merchant_share_bp: Mapped[int] = mapped_column(Integer, default=10000)
    vat_note: Mapped[str] = mapped_column(String(255), default="")
    default_reply: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Merchant(Base):
    """A merchant account; ``id`` is the ``user_id`` of the seed APIs."""

    __tablename__ = "merchants"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=False)
    login: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    # SHA-256 of the API key: keys are long random strings, so a fast hash lets us index them.
    api_key_hash: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    currency: Mapped[str] = mapped_column(String(3))
    credit_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    # Kept equal to the sum of the merchant's ledger entries, in the same transactions, so a
    # debit can be checked against it atomically (see store/ledger.py).
    balance_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Service(Base):
    """A merchant's service; ``id`` is the ``service_id`` of the seed APIs."""

    __tablename__ = "services"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=False)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"), index=True)
    # access_code | bulk | subscription | safe | transit | verification
    type: Mapped[str] = mapped_column(String(32))
    keyword: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[str] = mapped_column(String(16), default="active")
    ip_allowlist: Mapped[list[Any]] = mapped_column(default=list)
    # The type's own settings (code_kind, limits, patterns, ...), validated by domain rules.
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Where the service's callbacks go, by purpose: result, status, dlr, incoming.
    callback_urls: Mapped[dict[str, Any]] = mapped_column(default=dict)
    callback_method: Mapped[str] = mapped_column(String(8), default="POST")
    signing_secret: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ServiceShortNumber(Base):
    """Which short numbers a service listens on; (short number, keyword) routes an MO."""

    __tablename__ = "service_short_numbers"

    service_id: Mapped[int] = mapped_column(ForeignKey("services.id"), primary_key=True)
    short_number_id: Mapped[int] = mapped_column(ForeignKey("short_numbers.id"), primary_key=True)


class MoMessage(Base):
    """A mobile-originated SMS (or a call event) received from an operator."""

    __tablename__ = "mo_messages"
    __table_args__ = (UniqueConstraint("operator_id", "operator_message_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    operator_id: Mapped[str] = mapped_column(ForeignKey("operators.id"))
    operator_message_id: Mapped[str] = mapped_column(String(128))
    short_number: Mapped[str] = mapped_column(String(32))
    msisdn: Mapped[str] = mapped_column(String(32), index=True)
    text: Mapped[str] = mapped_column(Text)
    keyword: Mapped[str] = mapped_column(String(64), default="")
    kind: Mapped[str] = mapped_column(String(16), default="sms")  # sms | call
    service_id: Mapped[int | None] = mapped_column(ForeignKey("services.id"), index=True)
    # routed | unrouted | processed | rejected
    status: Mapped[str] = mapped_column(String(16))
    price_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="")
    received_at: Mapped[datetime] = mapped_column(index=True)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class MtMessage(Base):
    """A mobile-terminated SMS we send: a reply to an MO or a merchant's message.

    The row in status ``queued`` is itself the outbox entry of the operator link that will
    submit it: it is written in the transaction that decided to send it.
    """

    __tablename__ = "mt_messages"
    __table_args__ = (
        Index(
            "ix_mt_messages_operator_id_status_next_attempt_at",
            "operator_id",
            "status",
            "next_attempt_at",
        ),
        UniqueConstraint("service_id", "idempotency_key"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    merchant_id: Mapped[int | None] = mapped_column(ForeignKey("merchants.id"), index=True)
    service_id: Mapped[int | None] = mapped_column(ForeignKey("services.id"), index=True)
    mo_id: Mapped[int | None] = mapped_column(ForeignKey("mo_messages.id"), index=True)
    operator_id: Mapped[str] = mapped_column(ForeignKey("operators.id"))
    msisdn: Mapped[str] = mapped_column(String(32), index=True)
    sender: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    encoding: Mapped[str] = mapped_column(String(8))  # gsm7 | ucs2
    parts: Mapped[int] = mapped_column(Integer, default=1)
    # queued | submitting | submitted | delivered | undelivered | expired | rejected |
    # failed | unknown
    status: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str] = mapped_column(String(32), default="")
    cost_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="")
    idempotency_key: Mapped[str | None] = mapped_column(String(128), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(index=True)
    updated_at: Mapped[datetime]
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class MtPart(Base):
    """One segment of an MT as submitted; the operator's message id matches its DLRs."""

    __tablename__ = "mt_parts"
    __table_args__ = (
        UniqueConstraint("mt_id", "part_no"),
        # The message id first: receipts look parts up by a list of them (one operator's), and
        # with the operator first PostgreSQL may scan all of that operator's parts.
        Index("ix_mt_parts_operator_message_id_operator_id", "operator_message_id", "operator_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    mt_id: Mapped[int] = mapped_column(ForeignKey("mt_messages.id"))
    part_no: Mapped[int] = mapped_column(Integer)
    operator_id: Mapped[str] = mapped_column(String(64))
    operator_message_id: Mapped[str | None] = mapped_column(String(128), default=None)
    status: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str] = mapped_column(String(32), default="")
    submitted_at: Mapped[datetime | None] = mapped_column(default=None)
    done_at: Mapped[datetime | None] = mapped_column(default=None)


class DeliveryReport(Base):
    """Every delivery receipt received, matched or not (a receipt may precede its response)."""

    __tablename__ = "delivery_reports"
    __table_args__ = (
        Index(
            "ix_delivery_reports_operator_message_id_operator_id",
            "operator_message_id",
            "operator_id",
        ),
        # A part's reports; and, with mt_part_id NULL, the receipts still waiting for their
        # part by age, which the worker's sweep reads from the start of its window
        # (services/dlr_sweep.py). Not a partial index beside one on mt_part_id alone: given
        # both, SQLite and PostgreSQL take the latter for "mt_part_id IS NULL" and read every
        # unmatched receipt ever stored (migration 0007).
        Index("ix_delivery_reports_mt_part_id_received_at", "mt_part_id", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    operator_id: Mapped[str] = mapped_column(String(64))
    operator_message_id: Mapped[str] = mapped_column(String(128))
    mt_part_id: Mapped[int | None] = mapped_column(ForeignKey("mt_parts.id"))
    state: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str] = mapped_column(String(32), default="")
    received_at: Mapped[datetime]
    raw: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Job(Base):
    """The outbox: work that a transaction decided on and a worker carries out later."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_run_at", "status", "run_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16))  # queued | running | done | dead
    run_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    locked_by: Mapped[str | None] = mapped_column(String(128), default=None)
    last_error: Mapped[str] = mapped_column(Text, default="")
    # A job that must exist at most once (a rebill of one period, say) names its key here.
    dedupe_key: Mapped[str | None] = mapped_column(String(255), unique=True, default=None)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class WebhookEvent(Base):
    """A callback to a merchant; ``id`` is the stable event id merchants de-duplicate on."""

    __tablename__ = "webhook_events"
    __table_args__ = (Index("ix_webhook_events_service_id_created_at", "service_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"), index=True)
    service_id: Mapped[int | None] = mapped_column(ForeignKey("services.id"))
    # payment.result | subscription.status | message.dlr | message.incoming | ...
    event_type: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(Text)
    method: Mapped[str] = mapped_column(String(8))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16))  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)


class WebhookAttempt(Base):
    """One try at delivering a webhook event: the delivery log."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("webhook_events.id"), index=True)
    at: Mapped[datetime]
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    response_excerpt: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str] = mapped_column(Text, default="")
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)


class LedgerEntry(Base):
    """One movement of money on one account; a balance is the sum of its entries.

    ``account`` is ``merchant:<id>``, ``operator:<id>`` or ``platform``. ``(account, kind,
    ref)`` is unique so that a retried operation never books the same movement twice.
    """

    __tablename__ = "ledger_entries"
    __table_args__ = (UniqueConstraint("account", "kind", "ref"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(String(80), index=True)
    merchant_id: Mapped[int | None] = mapped_column(ForeignKey("merchants.id"), index=True)
    # mo_revenue | operator_share | platform_share | mt_cost | payout | adjustment
    kind: Mapped[str] = mapped_column(String(32))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    ref: Mapped[str] = mapped_column(String(128))  # e.g. "mo:17", "mt:42", "payout:3"
    memo: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime]


class AuditLog(Base):
    """Every configuration change: who, when, what."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32))  # create | update | delete
    entity: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class AccessCode(Base):
    """A generated access code (seed 000): what the subscriber received and may check."""

    __tablename__ = "access_codes"
    __table_args__ = (
        UniqueConstraint("service_id", "code"),
        Index("ix_access_codes_service_id_issued_at", "service_id", "issued_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id"))
    code: Mapped[str] = mapped_column(String(32))
    mo_id: Mapped[int | None] = mapped_column(ForeignKey("mo_messages.id"), index=True)
    msisdn: Mapped[str] = mapped_column(String(32), default="")
    kind: Mapped[str] = mapped_column(
        String(32)
    )  # period_from_issue | period_from_first_use | uses
    issued_at: Mapped[datetime]
    # The end of the validity period, once known (from issue, or from the first use).
    valid_until: Mapped[datetime | None] = mapped_column(default=None)
    # An absolute end for codes that are never used (optional per service).
    lifetime_until: Mapped[datetime | None] = mapped_column(default=None)
    first_used_at: Mapped[datetime | None] = mapped_column(default=None)
    uses_left: Mapped[int | None] = mapped_column(Integer, default=None)
    uses_count: Mapped[int] = mapped_column(Integer, default=0)
    # period_from_first_use: the period the subscriber paid for, fixed when the code is issued
    # (a later change of the service's settings does not alter codes already sold).
    period_seconds: Mapped[int | None] = mapped_column(Integer, default=None)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | expired | used


class CodeCheck(Base):
    """Every check attempt of a code: who asked, from where, what was answered."""

    __tablename__ = "code_checks"
    __table_args__ = (Index("ix_code_checks_service_id_at", "service_id", "at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    # Unknown services are not stored by id: INVALID_INPUT must not hint that they exist.
    service_id: Mapped[int | None] = mapped_column(ForeignKey("services.id"), default=None)
    code_id: Mapped[int | None] = mapped_column(ForeignKey("access_codes.id"), index=True)
    code_given: Mapped[str] = mapped_column(String(64), default="")
    at: Mapped[datetime]
    requester_ip: Mapped[str] = mapped_column(String(64), default="")
    user_ip: Mapped[str] = mapped_column(String(64), default="")
    answer: Mapped[str] = mapped_column(String(32))
    via: Mapped[str] = mapped_column(String(16), default="legacy")  # legacy | rest | hosted


class Route(Base):
    """Which operator link carries MTs to a destination country (None: the default route)."""

    __tablename__ = "routes"
    __table_args__ = (UniqueConstraint("country", "operator_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    country: Mapped[str | None] = mapped_column(String(2), default=None)
    operator_id: Mapped[str] = mapped_column(ForeignKey("operators.id"))
    priority: Mapped[int] = mapped_column(Integer, default=0)


class QuotaCounter(Base):
    """Parts sent by a service in one calendar window (``d:2026-01-31``, ``w:2026-W05``,
    ``m:2026-01``), moved in the transaction that accepts a message."""

    __tablename__ = "quota_counters"

    service_id: Mapped[int] = mapped_column(ForeignKey("services.id"), primary_key=True)
    window: Mapped[str] = mapped_column(String(16), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)


class SendMark(Base):
    """When a service last sent (``scope`` empty) or last sent to one recipient (``scope`` is
    the msisdn): the minimum interval between messages is checked against it."""

    __tablename__ = "send_marks"

    service_id: Mapped[int] = mapped_column(ForeignKey("services.id"), primary_key=True)
    scope: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_at: Mapped[datetime]


class OptOut(Base):
    """A recipient who must not get a service's messages."""

    __tablename__ = "opt_outs"

    service_id: Mapped[int] = mapped_column(ForeignKey("services.id"), primary_key=True)
    msisdn: Mapped[str] = mapped_column(String(32), primary_key=True)
    reason: Mapped[str] = mapped_column(String(32))  # stop_mo | merchant
    at: Mapped[datetime]


class Campaign(Base):
    """A bulk send from a CSV file; its rows make it resumable without sending twice."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id"), index=True)
    source: Mapped[str] = mapped_column(String(255))
    source_sha256: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16))  # running | done | interrupted
    total: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class CampaignRow(Base):
    __tablename__ = "campaign_rows"

    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), primary_key=True)
    row_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    mt_id: Mapped[int | None] = mapped_column(ForeignKey("mt_messages.id"), default=None)
    outcome: Mapped[str] = mapped_column(String(32), default="")


class MoFragment(Base):
    """One received part of a concatenated MO (UDH or SAR), kept until its message is whole.

    The SMPP link stores each part before it acknowledges it, and creates the MO in the
    transaction that stores the last part, so a crash between parts loses nothing. The unique
    key makes a redelivered part harmless.
    """

    __tablename__ = "mo_fragments"
    __table_args__ = (
        UniqueConstraint("operator_id", "msisdn", "short_number", "ref", "total", "seq"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    operator_id: Mapped[str] = mapped_column(ForeignKey("operators.id"))
    msisdn: Mapped[str] = mapped_column(String(32))
    short_number: Mapped[str] = mapped_column(String(32))
    ref: Mapped[int] = mapped_column(Integer)
    total: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    data_coding: Mapped[int] = mapped_column(Integer)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(index=True)


class MoUnconfirmedAck(Base):
    """An MO whose deliver_sm_resp the SMSC may not have received (SMPP gives MOs no id).

    Written with the MO; deleted once the SMSC has answered a request sent after that
    response on the same connection. A row left by a connection that broke first marks an
    identical deliver_sm arriving later as a possible redelivery (see docs/smpp.md).
    """

    __tablename__ = "mo_unconfirmed_acks"
    __table_args__ = (
        Index("ix_mo_unconfirmed_acks_operator_id_fingerprint", "operator_id", "fingerprint"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    operator_id: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str] = mapped_column(String(64))
    operator_message_id: Mapped[str] = mapped_column(String(128))
    connection_id: Mapped[str] = mapped_column(String(40))
    received_at: Mapped[datetime] = mapped_column(index=True)
