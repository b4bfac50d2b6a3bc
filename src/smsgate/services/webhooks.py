"""Merchant webhooks: the event, its delivery job and its delivery log.

``emit`` writes the event and its ``webhook.deliver`` job in the caller's transaction, so a
callback exists exactly when the change it reports was committed. The worker
(worker/webhook_sender.py) sends it and records every attempt here. The event id is stable
across retries and re-sends: merchants de-duplicate on it (docs/webhooks.md).

Signing secret: the event's service's ``signing_secret``. An event without a service (a
merchant-level event) is signed with the secret of the merchant's first service (lowest id);
a merchant without any service cannot receive one (the attempt fails, logged).
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, cast

from sqlalchemy import String, Table, any_, bindparam, func, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession

from smsgate.store.jobs import enqueue, enqueue_many
from smsgate.store.models import Service, WebhookAttempt, WebhookEvent
from smsgate.store.row_sets import execute, insert_rows, stored_time

DELIVER_KIND: Final = "webhook.deliver"
_EVENTS = cast(Table, WebhookEvent.__table__)
_ATTEMPTS = cast(Table, WebhookAttempt.__table__)

PENDING: Final = "pending"
DELIVERED: Final = "delivered"
FAILED: Final = "failed"

# Fields every callback carries; a caller's payload cannot override them.
EVENT_ID_FIELD: Final = "event_id"
EVENT_TYPE_FIELD: Final = "event_type"
RESERVED_FIELDS: Final = frozenset({EVENT_ID_FIELD, EVENT_TYPE_FIELD, "sign"})

METHODS: Final = frozenset({"GET", "POST"})

# The age limit (settings.webhook_max_age_seconds) ends a delivery, not a count of attempts.
DELIVERY_MAX_ATTEMPTS: Final = 100_000

EXCERPT_CHARS: Final = 500
ERROR_CHARS: Final = 1000


def new_event_id(random_bytes: bytes | None = None) -> str:
    """``evt_`` and 24 lowercase base32 characters (120 random bits)."""
    raw = secrets.token_bytes(15) if random_bytes is None else random_bytes
    if len(raw) != 15:
        raise ValueError("an event id takes 15 random bytes")
    return "evt_" + base64.b32encode(raw).decode("ascii").lower()


@dataclass(frozen=True, slots=True)
class NewEvent:
    """A callback to record: see :func:`emit` for the fields."""

    merchant_id: int
    service_id: int | None
    event_type: str
    url: str
    payload: Mapping[str, str]
    method: str = "POST"


async def emit(
    session: AsyncSession,
    *,
    merchant_id: int,
    service_id: int | None,
    event_type: str,
    url: str,
    method: str = "POST",
    payload: Mapping[str, str],
    now: datetime,
) -> str:
    """Record a callback and queue its delivery, in the caller's transaction.

    ``payload`` holds the form fields; ``event_id`` and ``event_type`` are added (and win over
    fields of those names). ``method`` is ``POST`` (form body) or ``GET`` (query string). A URL
    that cannot be called is not an error here: the delivery fails and says why in the log,
    so the use case that emitted the event is never rolled back by a merchant's setting.
    """
    event = NewEvent(merchant_id, service_id, event_type, url, payload, method)
    return (await emit_many(session, [event], now=now))[0]


async def emit_many(
    session: AsyncSession, events: Sequence[NewEvent], *, now: datetime
) -> list[str]:
    """:func:`emit` for many callbacks: one insert of the events, one of their delivery jobs.
    Returns the event ids, in order."""
    if not events:
        return []
    randomness = secrets.token_bytes(15 * len(events))
    ids = [new_event_id(randomness[15 * n : 15 * n + 15]) for n in range(len(events))]
    rows = []
    for event_id, event in zip(ids, events, strict=True):
        fields = {str(k): str(v) for k, v in event.payload.items() if k not in RESERVED_FIELDS}
        fields[EVENT_ID_FIELD] = event_id
        fields[EVENT_TYPE_FIELD] = event.event_type
        rows.append(
            {
                "id": event_id,
                "merchant_id": event.merchant_id,
                "service_id": event.service_id,
                "event_type": event.event_type,
                "url": event.url,
                "method": event.method.strip().upper(),
                "payload": fields,
                "status": PENDING,
                "attempts": 0,
                "created_at": now,
            }
        )
    # One JSON parameter, not executemany: see store/row_sets.py.
    await insert_rows(await session.connection(), _EVENTS, rows, columns=_EVENT_COLUMNS)
    enqueued_at = now.isoformat()
    await enqueue_many(
        session,
        DELIVER_KIND,
        [{"event_id": event_id, "enqueued_at": enqueued_at} for event_id in ids],
        now=now,
        max_attempts=DELIVERY_MAX_ATTEMPTS,
    )
    return ids


_EVENT_COLUMNS: Final = (
    "id",
    "merchant_id",
    "service_id",
    "event_type",
    "url",
    "method",
    "payload",
    "status",
    "attempts",
    "created_at",
)


async def resend(session: AsyncSession, event_id: str, now: datetime) -> int:
    """Deliver an event again (same id, same fields, fresh signature and age limit); returns
    the new job's id. ``LookupError`` if there is no such event.

    The event goes back to ``pending``. Re-sending an event that is still being retried adds a
    second delivery beside the first: the merchant may see it twice and keeps one by its id.
    """
    result = await session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.id == event_id)
        .values(status=PENDING)
        .execution_options(synchronize_session=False)
    )
    if int(getattr(result, "rowcount", 0)) != 1:
        raise LookupError(f"no webhook event {event_id}")
    return await _enqueue_delivery(session, event_id, now)


async def _enqueue_delivery(session: AsyncSession, event_id: str, now: datetime) -> int:
    return await enqueue(
        session,
        DELIVER_KIND,
        {"event_id": event_id, "enqueued_at": now.isoformat()},
        now=now,
        max_attempts=DELIVERY_MAX_ATTEMPTS,
    )


# --- what the sender needs, and what it records ----------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """An event as the sender sees it, with the secret to sign it (None: nothing to sign
    with)."""

    event_id: str
    event_type: str
    merchant_id: int
    service_id: int | None
    url: str
    method: str
    fields: dict[str, str]
    status: str
    signing_secret: str | None
    created_at: datetime


async def load_delivery(session: AsyncSession, event_id: str) -> Delivery | None:
    event = (
        await session.execute(select(WebhookEvent).where(WebhookEvent.id == event_id))
    ).scalar_one_or_none()
    if event is None:
        return None
    if event.service_id is not None:
        secret_query = select(Service.signing_secret).where(Service.id == event.service_id)
    else:
        secret_query = (
            select(Service.signing_secret)
            .where(Service.merchant_id == event.merchant_id)
            .order_by(Service.id)
            .limit(1)
        )
    secret = (await session.execute(secret_query)).scalar_one_or_none()
    fields: dict[str, Any] = dict(event.payload or {})
    return Delivery(
        event_id=event.id,
        event_type=event.event_type,
        merchant_id=event.merchant_id,
        service_id=event.service_id,
        url=event.url,
        method=event.method,
        fields={str(k): str(v) for k, v in fields.items()},
        status=event.status,
        signing_secret=secret or None,
        created_at=event.created_at,
    )


@dataclass(frozen=True)
class AttemptRecord:
    """One try, as the delivery log shows it."""

    at: datetime
    status_code: int | None
    response_excerpt: str
    error: str
    duration_ms: int


async def record_attempt(
    session: AsyncSession, event_id: str, attempt: AttemptRecord, *, outcome: str
) -> None:
    """Log one attempt and move the event: ``outcome`` is ``delivered``, ``failed`` (no more
    tries) or ``pending`` (a retry follows)."""
    await record_attempts(session, [AttemptOutcome(event_id, attempt, outcome)])


async def mark_failed(session: AsyncSession, event_id: str) -> None:
    """No more tries. An event another delivery got through meanwhile stays delivered."""
    await mark_failed_many(session, [event_id])


# --- many deliveries at once (the worker's batches) -------------------------------------------


async def load_deliveries(session: AsyncSession, event_ids: Collection[str]) -> dict[str, Delivery]:
    """``load_delivery`` for many events: two statements whatever their number (the events
    with their service's secret, then the first-service secrets of merchant-level events)."""
    if not event_ids:
        return {}
    rows = (
        await session.execute(
            select(
                WebhookEvent.id,
                WebhookEvent.event_type,
                WebhookEvent.merchant_id,
                WebhookEvent.service_id,
                WebhookEvent.url,
                WebhookEvent.method,
                WebhookEvent.payload,
                WebhookEvent.status,
                WebhookEvent.created_at,
                Service.signing_secret,
            )
            .outerjoin(Service, Service.id == WebhookEvent.service_id)
            .where(_one_of(session, WebhookEvent.id, set(event_ids)))
        )
    ).all()
    merchant_level = {row.merchant_id for row in rows if row.service_id is None}
    first_secrets: dict[int, str | None] = {}
    if merchant_level:
        first = (
            select(Service.merchant_id, func.min(Service.id).label("service_id"))
            .where(Service.merchant_id.in_(merchant_level))
            .group_by(Service.merchant_id)
            .subquery()
        )
        secrets_rows = await session.execute(
            select(first.c.merchant_id, Service.signing_secret).join(
                Service, Service.id == first.c.service_id
            )
        )
        first_secrets = {int(m): s for m, s in secrets_rows}
    deliveries = {}
    for row in rows:
        secret = (
            row.signing_secret if row.service_id is not None else first_secrets.get(row.merchant_id)
        )
        deliveries[row.id] = Delivery(
            event_id=row.id,
            event_type=row.event_type,
            merchant_id=row.merchant_id,
            service_id=row.service_id,
            url=row.url,
            method=row.method,
            fields={str(k): str(v) for k, v in (row.payload or {}).items()},
            status=row.status,
            signing_secret=secret or None,
            created_at=row.created_at,
        )
    return deliveries


def _one_of(session: AsyncSession, column: Any, values: Collection[str]) -> Any:
    """``column IN values``; on PostgreSQL as ``= ANY(array)``, one parameter, so that the
    statement is the same whatever the number of values (parsed and planned once per
    connection, not once per batch size)."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam("ids", list(values), type_=postgresql.ARRAY(String)))
    return column.in_(values)


@dataclass(frozen=True)
class AttemptOutcome:
    """One logged attempt and where it leaves the event (``record_attempt``'s arguments)."""

    event_id: str
    attempt: AttemptRecord
    outcome: str


async def record_attempts(session: AsyncSession, outcomes: Sequence[AttemptOutcome]) -> None:
    """``record_attempt`` for many attempts: two statements whatever their number, one insert
    into the log and one update of the events (their counts, states and delivery times)."""
    if not outcomes:
        return
    for item in outcomes:
        if item.outcome not in (PENDING, DELIVERED, FAILED):
            raise ValueError(f"unknown outcome {item.outcome!r}")
    connection = await session.connection()
    # One JSON parameter per statement, not executemany: see store/row_sets.py.
    await insert_rows(
        connection,
        _ATTEMPTS,
        [
            {
                "event_id": item.event_id,
                "at": item.attempt.at,
                "status_code": item.attempt.status_code,
                "response_excerpt": item.attempt.response_excerpt[:EXCERPT_CHARS],
                "error": item.attempt.error[:ERROR_CHARS],
                "duration_ms": item.attempt.duration_ms,
            }
            for item in outcomes
        ],
        columns=_ATTEMPT_COLUMNS,
    )
    # One row per event (a re-sent event can be delivered twice in one batch): the attempts
    # it made, when it was delivered if it was, and whether one of them ended it as failed.
    # Delivered wins over failed, and failed only ends an event still pending (mark_failed).
    made: dict[str, int] = {}
    delivered_at: dict[str, datetime] = {}
    failed: set[str] = set()
    for item in outcomes:
        made[item.event_id] = made.get(item.event_id, 0) + 1
        if item.outcome == DELIVERED:
            delivered_at[item.event_id] = item.attempt.at
        elif item.outcome == FAILED:
            failed.add(item.event_id)
    dialect = connection.dialect
    rows = [
        {
            "id": event_id,
            "made": count,
            "delivered_at": _json_time(dialect, delivered_at.get(event_id)),
            "failed": event_id in failed,
        }
        # In id order, so that two workers updating the same events lock them in one order.
        for event_id, count in sorted(made.items())
    ]
    sql = _EVENT_OUTCOMES_SQLITE if dialect.name == "sqlite" else _EVENT_OUTCOMES_POSTGRES
    await execute(connection, sql, (json.dumps(rows, separators=(",", ":")),))


def _json_time(dialect: Dialect, value: datetime | None) -> str | None:
    """A time as the JSON rows of the outcome update carry it (as the column stores it)."""
    if value is None:
        return None
    if dialect.name == "sqlite":
        return str(stored_time(dialect, value))
    return value.astimezone(UTC).isoformat()


_ATTEMPT_COLUMNS: Final = (
    "event_id",
    "at",
    "status_code",
    "response_excerpt",
    "error",
    "duration_ms",
)

# The events' side of a batch of attempts, set-wise. Only the status literals are spliced in.
_EVENT_OUTCOMES_POSTGRES: Final = f"""
UPDATE webhook_events AS e SET
    attempts = e.attempts + r.made,
    status = CASE
        WHEN r.delivered_at IS NOT NULL THEN '{DELIVERED}'
        WHEN r.failed AND e.status = '{PENDING}' THEN '{FAILED}'
        ELSE e.status END,
    delivered_at = COALESCE(r.delivered_at, e.delivered_at)
FROM json_to_recordset($1::json) AS r(id text, made int, delivered_at timestamptz, failed boolean)
WHERE e.id = r.id
"""  # noqa: S608
_EVENT_OUTCOMES_SQLITE: Final = f"""
UPDATE webhook_events SET
    attempts = webhook_events.attempts + (r.value ->> 'made'),
    status = CASE
        WHEN r.value ->> 'delivered_at' IS NOT NULL THEN '{DELIVERED}'
        WHEN r.value ->> 'failed' AND webhook_events.status = '{PENDING}' THEN '{FAILED}'
        ELSE webhook_events.status END,
    delivered_at = COALESCE(r.value ->> 'delivered_at', webhook_events.delivered_at)
FROM json_each(?) AS r
WHERE webhook_events.id = r.value ->> 'id'
"""  # noqa: S608


async def mark_failed_many(session: AsyncSession, event_ids: Collection[str]) -> None:
    """``mark_failed`` for many events."""
    if not event_ids:
        return
    await session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.id.in_(set(event_ids)), WebhookEvent.status == PENDING)
        .values(status=FAILED)
        .execution_options(synchronize_session=False)
    )


# --- reading, for the panel and the API ------------------------------------------------------


async def get_event(session: AsyncSession, event_id: str) -> WebhookEvent | None:
    return await session.get(WebhookEvent, event_id, populate_existing=True)


async def list_attempts(session: AsyncSession, event_id: str) -> Sequence[WebhookAttempt]:
    """The delivery log of one event, oldest first."""
    rows = await session.execute(
        select(WebhookAttempt)
        .where(WebhookAttempt.event_id == event_id)
        .order_by(WebhookAttempt.at, WebhookAttempt.id)
    )
    return rows.scalars().all()


async def list_events(
    session: AsyncSession,
    *,
    merchant_id: int,
    service_id: int | None = None,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Sequence[WebhookEvent]:
    """A merchant's events, newest first."""
    query = (
        select(WebhookEvent)
        .where(WebhookEvent.merchant_id == merchant_id)
        .order_by(WebhookEvent.created_at.desc(), WebhookEvent.id)
        .limit(limit)
        .offset(offset)
    )
    if service_id is not None:
        query = query.where(WebhookEvent.service_id == service_id)
    if status is not None:
        query = query.where(WebhookEvent.status == status)
    return (await session.execute(query)).scalars().all()
