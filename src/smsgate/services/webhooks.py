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
import secrets
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from smsgate.store.jobs import enqueue, enqueue_many
from smsgate.store.models import Service, WebhookAttempt, WebhookEvent
from smsgate.store.row_sets import insert_rows

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
            .where(WebhookEvent.id.in_(set(event_ids)))
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


@dataclass(frozen=True)
class AttemptOutcome:
    """One logged attempt and where it leaves the event (``record_attempt``'s arguments)."""

    event_id: str
    attempt: AttemptRecord
    outcome: str


async def record_attempts(session: AsyncSession, outcomes: Sequence[AttemptOutcome]) -> None:
    """``record_attempt`` for many attempts: one insert into the log, one update of the
    events' counts and states (a join on the outcomes), one for those that failed."""
    if not outcomes:
        return
    for item in outcomes:
        if item.outcome not in (PENDING, DELIVERED, FAILED):
            raise ValueError(f"unknown outcome {item.outcome!r}")
    connection = await session.connection()
    await connection.execute(
        insert(_ATTEMPTS),
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
    )
    # One row per event (a re-sent event can be delivered twice in one batch): the attempts
    # it made, and when it was delivered if it was. Each kind is one statement run for every
    # row (executemany: compiled once, one driver call), in id order so that two workers
    # updating the same events lock them in the same order.
    made: dict[str, int] = {}
    delivered_at: dict[str, datetime] = {}
    for item in outcomes:
        made[item.event_id] = made.get(item.event_id, 0) + 1
        if item.outcome == DELIVERED:
            delivered_at[item.event_id] = item.attempt.at
    delivered = [
        {"b_id": event_id, "b_made": made[event_id], "b_at": at}
        for event_id, at in sorted(delivered_at.items())
    ]
    others = [
        {"b_id": event_id, "b_made": count}
        for event_id, count in sorted(made.items())
        if event_id not in delivered_at
    ]
    if delivered:
        await connection.execute(
            update(_EVENTS)
            .where(_EVENTS.c.id == bindparam("b_id"))
            .values(
                attempts=_EVENTS.c.attempts + bindparam("b_made"),
                status=DELIVERED,
                delivered_at=bindparam("b_at"),
            ),
            delivered,
        )
    if others:
        await connection.execute(
            update(_EVENTS)
            .where(_EVENTS.c.id == bindparam("b_id"))
            .values(attempts=_EVENTS.c.attempts + bindparam("b_made")),
            others,
        )
    failed = {item.event_id for item in outcomes if item.outcome == FAILED}
    if failed:
        await mark_failed_many(session, failed)


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
