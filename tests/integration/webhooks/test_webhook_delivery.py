"""Merchant webhooks end to end: emit in a transaction, the worker delivers to a real HTTP
receiver on 127.0.0.1, signatures verified independently, attempts logged, retries by the
clock, re-send, refusals and the age limit."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import string
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from unittest.mock import ANY
from urllib.parse import parse_qsl

import pytest
from sqlalchemy import select
from standardwebhooks import Webhook

from smsgate.domain.clock import FakeClock
from smsgate.runtime import Runtime
from smsgate.services import webhooks
from smsgate.store import jobs
from smsgate.store.models import Job, Service, WebhookAttempt, WebhookEvent
from smsgate.worker import WebhookSender, Worker, default_handlers

FIELDS = {"id": "42", "msisdn": "359888123456", "status": "delivered", "text": "Здравей & =+ 100%"}


async def _emit(
    runtime: Runtime,
    url: str,
    *,
    method: str = "POST",
    service_id: int | None = 201,
    payload: Mapping[str, str] = FIELDS,
) -> str:
    async with runtime.sessions.begin() as session:
        return await webhooks.emit(
            session,
            merchant_id=1,
            service_id=service_id,
            event_type="message.dlr",
            url=url,
            method=method,
            payload=payload,
            now=runtime.clock.now(),
        )


async def _event(runtime: Runtime, event_id: str) -> WebhookEvent:
    async with runtime.sessions() as session:
        event = await webhooks.get_event(session, event_id)
    assert event is not None
    return event


async def _attempts(runtime: Runtime, event_id: str) -> list[WebhookAttempt]:
    async with runtime.sessions() as session:
        return list(await webhooks.list_attempts(session, event_id))


async def _jobs(runtime: Runtime) -> list[Job]:
    async with runtime.sessions() as session:
        return list(await jobs.list_jobs(session, kind=webhooks.DELIVER_KIND))


async def _run_next(worker: Worker, runtime: Runtime, clock: FakeClock) -> int:
    """Move the clock to the next queued delivery (skipping the backoff wait) and run it."""
    queued = [job for job in await _jobs(runtime) if job.status == "queued"]
    if queued:
        clock.set(max(clock.now(), min(job.run_at for job in queued)))
    return await worker.run_pending()


def _worker(runtime: Runtime) -> Worker:
    # rand = 1: every backoff is its ceiling, so the schedule is known.
    return Worker(runtime, default_handlers(runtime), concurrency=4, rand=lambda: 1.0)


# An independent reading of docs/webhooks.md, "The sign field".
_UNRESERVED = set(string.ascii_letters + string.digits + "-._~")


def _rfc3986(text: str) -> str:
    return "".join(
        char if char in _UNRESERVED else "".join(f"%{byte:02X}" for byte in char.encode())
        for char in text
    )


def _expected_sign(fields: Mapping[str, str], secret: str) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    pairs = sorted((k, v) for k, v in fields.items() if k != "sign")
    base = "&".join(f"{_rfc3986(k)}={_rfc3986(v)}" for k, v in pairs)
    return hmac.new(key, base.encode(), hashlib.sha256).hexdigest()


def _check_signatures(
    fields: dict[str, str], signed_content: str, headers: dict[str, str], secret: str
) -> None:
    Webhook(secret).verify(signed_content, headers, json_parse=False)  # raises if wrong
    assert fields["sign"] == _expected_sign(fields, secret)


async def test_a_webhook_to_a_receiver_that_recovers_is_delivered_exactly_once(
    runtime: Runtime, receiver: Any, clock: FakeClock, secret: str
) -> None:
    event_id = await _emit(runtime, receiver.url())
    worker = _worker(runtime)
    try:
        # 1: nobody listens on the port yet.
        assert await _run_next(worker, runtime, clock) == 1
        await receiver.listen()
        receiver.statuses = [500, 503]
        # 2 and 3: errors; 4: accepted.
        for _ in range(3):
            assert await _run_next(worker, runtime, clock) == 1
        # Nothing more to do, however long we wait.
        clock.advance(4 * 24 * 3600)
        assert await worker.run_pending() == 0
    finally:
        await worker.aclose()

    assert [r.status for r in receiver.requests] == [500, 503, 200]
    (delivered,) = receiver.delivered()
    assert delivered.method == "POST"
    assert delivered.headers["content-type"] == "application/x-www-form-urlencoded"
    assert delivered.headers["webhook-id"] == event_id
    fields = dict(parse_qsl(delivered.body.decode(), keep_blank_values=True, strict_parsing=True))
    assert fields == {**FIELDS, "event_id": event_id, "event_type": "message.dlr", "sign": ANY}
    _check_signatures(fields, delivered.body.decode(), delivered.headers, secret)
    # The same event id on every attempt, so the merchant can de-duplicate.
    assert {r.headers["webhook-id"] for r in receiver.requests} == {event_id}

    event = await _event(runtime, event_id)
    assert (event.status, event.attempts) == ("delivered", 4)
    assert event.delivered_at == clock.now() - timedelta(days=4)
    log = await _attempts(runtime, event_id)
    assert [a.status_code for a in log] == [None, 500, 503, 200]
    assert "ConnectError" in log[0].error
    assert [a.error for a in log[1:]] == ["", "", ""]
    assert log[3].response_excerpt == "ok"
    # The schedule: 15 s, then 30 s, then 60 s (rand = 1).
    gaps = [(b.at - a.at).total_seconds() for a, b in itertools.pairwise(log)]
    assert gaps == [15.0, 30.0, 60.0]
    assert [(job.status, job.attempts) for job in await _jobs(runtime)] == [("done", 4)]


async def test_get_puts_the_fields_in_the_query_string_and_signs_it(
    runtime: Runtime, receiver: Any, secret: str
) -> None:
    await receiver.listen()
    event_id = await _emit(runtime, receiver.url("/cb.php?shop=7#frag"), method="get")
    worker = _worker(runtime)
    try:
        assert await worker.run_pending() == 1
    finally:
        await worker.aclose()

    (request,) = receiver.requests
    assert (request.method, request.path, request.body) == ("GET", "/cb.php", b"")
    assert request.query.startswith("shop=7&")
    fields = dict(parse_qsl(request.query, keep_blank_values=True, strict_parsing=True))
    assert fields == {
        "shop": "7",
        **FIELDS,
        "event_id": event_id,
        "event_type": "message.dlr",
        "sign": ANY,
    }
    # Standard Webhooks over the whole query string as sent; `sign` over every parameter a
    # PHP script finds in $_GET, the URL's own `shop` included.
    _check_signatures(fields, request.query, request.headers, secret)
    assert (await _event(runtime, event_id)).status == "delivered"


async def test_keep_alive_a_few_connections_per_host_serve_many_callbacks(
    runtime: Runtime, receiver: Any
) -> None:
    await receiver.listen()
    for n in range(30):
        await _emit(runtime, receiver.url(), payload={"n": str(n)})
    sender = WebhookSender(runtime, per_origin=2)
    worker = Worker(runtime, {webhooks.DELIVER_KIND: sender}, batch_size=10)
    try:
        # Three batches of ten, at most two requests to the host at a time.
        assert await worker.run_pending() == 30
    finally:
        await worker.aclose()
    assert len(receiver.delivered()) == 30
    assert receiver.connections == 2


async def test_a_private_address_is_refused_without_retry(
    runtime: Runtime, receiver: Any, clock: FakeClock
) -> None:
    await receiver.listen()
    runtime.settings.webhook_allow_private = False
    by_ip = await _emit(runtime, receiver.url())
    by_name = await _emit(runtime, f"http://localhost:{receiver.port}/hook")
    mapped = await _emit(runtime, f"http://[::ffff:127.0.0.1]:{receiver.port}/hook")
    bad_scheme = await _emit(runtime, "file:///etc/passwd")
    worker = _worker(runtime)
    try:
        assert await worker.run_pending() == 4
        clock.advance(3600)
        assert await worker.run_pending() == 0
    finally:
        await worker.aclose()

    assert receiver.requests == []
    for event_id, words in [
        (by_ip, "127.0.0.1, a non-public address"),
        (by_name, "non-public address"),
        (mapped, "non-public address"),
        (bad_scheme, "scheme must be http or https"),
    ]:
        event = await _event(runtime, event_id)
        assert (event.status, event.attempts) == ("failed", 1)
        (attempt,) = await _attempts(runtime, event_id)
        assert attempt.status_code is None
        assert words in attempt.error
    assert {(job.status, job.attempts) for job in await _jobs(runtime)} == {("dead", 1)}


async def test_resend_delivers_the_same_event_again(
    runtime: Runtime, receiver: Any, secret: str
) -> None:
    await receiver.listen()
    event_id = await _emit(runtime, receiver.url())
    worker = _worker(runtime)
    try:
        assert await worker.run_pending() == 1
        async with runtime.sessions.begin() as session:
            await webhooks.resend(session, event_id, runtime.clock.now())
        assert (await _event(runtime, event_id)).status == "pending"
        assert await worker.run_pending() == 1
        async with runtime.sessions.begin() as session:
            with pytest.raises(LookupError):
                await webhooks.resend(session, "evt_nosuchevent", runtime.clock.now())
    finally:
        await worker.aclose()

    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == event_id
    assert first.body == second.body
    _check_signatures(
        dict(parse_qsl(second.body.decode())), second.body.decode(), second.headers, secret
    )
    event = await _event(runtime, event_id)
    assert (event.status, event.attempts) == ("delivered", 2)
    assert len(await _attempts(runtime, event_id)) == 2


async def test_retries_stop_after_three_days_and_the_event_fails(
    runtime: Runtime, receiver: Any, clock: FakeClock
) -> None:
    await receiver.listen()
    receiver.statuses = [500] * 1000
    start = clock.now()
    event_id = await _emit(runtime, receiver.url())
    worker = _worker(runtime)
    try:
        for _ in range(200):
            if (await _event(runtime, event_id)).status != "pending":
                break
            assert await _run_next(worker, runtime, clock) == 1
        clock.advance(30 * 24 * 3600)
        assert await worker.run_pending() == 0
    finally:
        await worker.aclose()

    event = await _event(runtime, event_id)
    assert event.status == "failed"
    log = await _attempts(runtime, event_id)
    assert len(log) == len(receiver.requests) == event.attempts
    assert all(a.at - start < timedelta(days=3) for a in log)
    # rand = 1: 15 s doubling to the 3 h cap, then every 3 h: 33 tries in 3 days.
    assert len(log) == 33
    (job,) = await _jobs(runtime)
    assert job.status == "dead"
    assert "not delivered within 3 days" in job.last_error


async def test_slow_answers_redirects_and_long_bodies(
    runtime: Runtime, receiver: Any, clock: FakeClock
) -> None:
    await receiver.listen()
    runtime.settings.webhook_timeout_seconds = 0.2
    receiver.stall = asyncio.Event()
    event_id = await _emit(runtime, receiver.url())
    worker = _worker(runtime)
    try:
        assert await worker.run_pending() == 1  # times out
        receiver.stall.set()
        receiver.stall = None
        receiver.statuses = [302]
        assert await _run_next(worker, runtime, clock) == 1  # a redirect is not delivery
        receiver.body = ("я" * 2000).encode()
        assert await _run_next(worker, runtime, clock) == 1
    finally:
        await worker.aclose()
    log = await _attempts(runtime, event_id)
    assert log[0].error == "timed out after 0.2 s"
    assert log[1].status_code == 302
    assert (log[2].status_code, log[2].response_excerpt) == (200, "я" * 500)
    assert (await _event(runtime, event_id)).status == "delivered"


async def test_a_merchant_level_event_is_signed_with_the_first_services_secret(
    runtime: Runtime, receiver: Any
) -> None:
    await receiver.listen()
    other_secret = "a hand-written secret"
    async with runtime.sessions.begin() as session:
        now = runtime.clock.now()
        session.add(
            Service(
                id=105,  # lower than 201: the merchant's first service
                merchant_id=1,
                type="bulk",
                signing_secret=other_secret,
                created_at=now,
                updated_at=now,
            )
        )
    await _emit(runtime, receiver.url(), service_id=None)
    worker = _worker(runtime)
    try:
        assert await worker.run_pending() == 1
    finally:
        await worker.aclose()
    (request,) = receiver.requests
    # A secret without the whsec_ prefix is used as its UTF-8 bytes.
    Webhook(other_secret.encode()).verify(request.body.decode(), request.headers, json_parse=False)
    fields = dict(parse_qsl(request.body.decode()))
    key = other_secret.encode()
    base = "&".join(
        f"{_rfc3986(k)}={_rfc3986(v)}" for k, v in sorted(fields.items()) if k != "sign"
    )
    assert fields["sign"] == hmac.new(key, base.encode(), hashlib.sha256).hexdigest()


async def test_emit_is_part_of_the_callers_transaction(runtime: Runtime) -> None:
    async with runtime.sessions() as session, session.begin():
        await webhooks.emit(
            session,
            merchant_id=1,
            service_id=201,
            event_type="message.dlr",
            url="https://shop.example/dlr",
            payload={"id": "1"},
            now=runtime.clock.now(),
        )
        await session.rollback()
    async with runtime.sessions() as session:
        assert (await session.execute(select(WebhookEvent))).first() is None
        assert (await session.execute(select(Job))).first() is None
