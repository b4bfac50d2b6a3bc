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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from smsgate.store.jobs import enqueue, enqueue_many
from smsgate.store.models import Service, WebhookAttempt, WebhookEvent

DELIVER_KIND: Final = "webhook.deliver"
_EVENTS = cast(Table, WebhookEvent.__table__)

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
    # Core on the connection: the ORM's bulk insert costs more per row than the database.
    connection = await session.connection()
    await connection.execute(insert(_EVENTS), rows)
    enqueued_at = now.isoformat()
    await enqueue_many(
        session,
        DELIVER_KIND,
        [{"event_id": event_id, "enqueued_at": enqueued_at} for event_id in ids],
        now=now,
        max_attempts=DELIVERY_MAX_ATTEMPTS,
    )
    return ids


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
    if outcome not in (PENDING, DELIVERED, FAILED):
        raise ValueError(f"unknown outcome {outcome!r}")
    await session.execute(
        insert(WebhookAttempt).values(
            event_id=event_id,
            at=attempt.at,
            status_code=attempt.status_code,
            response_excerpt=attempt.response_excerpt[:EXCERPT_CHARS],
            error=attempt.error[:ERROR_CHARS],
            duration_ms=attempt.duration_ms,
        )
    )
    await session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.id == event_id)
        .values(attempts=WebhookEvent.attempts + 1)
        .execution_options(synchronize_session=False)
    )
    if outcome == DELIVERED:
        await session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id == event_id)
            .values(status=DELIVERED, delivered_at=attempt.at)
            .execution_options(synchronize_session=False)
        )
    elif outcome == FAILED:
        await mark_failed(session, event_id)


async def mark_failed(session: AsyncSession, event_id: str) -> None:
    """No more tries. An event another delivery got through meanwhile stays delivered."""
    await session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.id == event_id, WebhookEvent.status == PENDING)
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
