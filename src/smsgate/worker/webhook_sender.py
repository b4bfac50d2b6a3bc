"""The ``webhook.deliver`` handler: send one callback, log the attempt, decide what follows.

Wire format (docs/webhooks.md is the contract):

- POST (default): ``application/x-www-form-urlencoded`` body of the event's fields plus
  ``sign``; the Standard Webhooks signature covers the body exactly as sent.
- GET: the same fields appended to the URL's query string; the Standard Webhooks signature
  covers the whole query string of the request (everything after ``?``, as sent, any query
  the merchant's URL already had included), and ``sign`` covers all its parameters.
- Headers ``webhook-id`` (the event id, the same on every attempt), ``webhook-timestamp``
  (Unix seconds of this attempt) and ``webhook-signature`` (``v1,<base64 HMAC-SHA256 of
  "{id}.{timestamp}.{signed content}">``).

Outcome: any 2xx is delivered (the body is ignored). Anything else, a timeout or a network
error is retried with backoff (``WEBHOOK_RETRY``) until ``settings.webhook_max_age_seconds``
after the delivery was queued; then the event is ``failed``. A URL we refuse to call (scheme,
private address) or an event without a signing secret fails at once, without retries.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode

import httpx2
from standardwebhooks import Webhook

from smsgate.domain.backoff import RetryPolicy
from smsgate.domain.signing import SIGN_FIELD, form_signature, signing_key
from smsgate.domain.url_safety import UnsafeUrlError, parse_callback_url
from smsgate.metrics import WEBHOOK_ATTEMPTS
from smsgate.runtime import Runtime
from smsgate.services import webhooks
from smsgate.services.webhooks import DELIVER_KIND, AttemptRecord, Delivery
from smsgate.worker.handler import JobContext, PermanentJobError
from smsgate.worker.safe_transport import make_webhook_client

__all__ = ["DELIVER_KIND", "WEBHOOK_RETRY", "WebhookDeliveryError", "WebhookSender"]

log = logging.getLogger("smsgate.webhooks")

# Attempt n waits up to min(3 h, 15 s * 2**(n-1)): quick retries for a blip, then every
# 1.5 h on average: some 50 attempts in 3 days (docs/webhooks.md).
WEBHOOK_RETRY: Final = RetryPolicy(base_seconds=15.0, cap_seconds=3 * 3600.0)

# Read this much of a response at most; the log keeps the first EXCERPT_CHARS characters.
MAX_RESPONSE_BYTES: Final = 64 * 1024
EXCERPT_BYTES: Final = 4 * webhooks.EXCERPT_CHARS


class WebhookDeliveryError(Exception):
    """A failed attempt that will be retried (the worker reschedules the job)."""


class WebhookSender:
    """The handler; one per worker, holding the pooled client (``aclose`` closes it)."""

    def __init__(self, runtime: Runtime, *, client: httpx2.AsyncClient | None = None) -> None:
        self._runtime = runtime
        self._client = client
        self._owns_client = client is None

    async def aclose(self) -> None:
        if self._client is not None and self._owns_client:
            await self._client.aclose()
            self._client = None

    def _http(self) -> httpx2.AsyncClient:
        # Made on first use, inside the running loop the worker uses.
        if self._client is None:
            self._client = make_webhook_client(self._runtime.settings)
        return self._client

    async def __call__(self, payload: dict[str, Any], ctx: JobContext) -> None:
        event_id = str(payload["event_id"])
        sessions = self._runtime.sessions
        async with sessions() as session:
            delivery = await webhooks.load_delivery(session, event_id)
        if delivery is None:
            raise PermanentJobError(f"no webhook event {event_id}")
        if delivery.status != webhooks.PENDING:
            # Delivered already (by this job before a crash, or by a re-send), or failed.
            return
        now = ctx.now()
        max_age = timedelta(seconds=self._runtime.settings.webhook_max_age_seconds)
        queued_at = _parse_time(payload.get("enqueued_at"), delivery.created_at)
        if now - queued_at >= max_age:
            async with sessions.begin() as session:
                await webhooks.mark_failed(session, event_id)
            WEBHOOK_ATTEMPTS.labels(event_type=delivery.event_type, outcome="expired").inc()
            raise PermanentJobError(f"not delivered within {max_age}; given up")

        attempt, permanent = await self._attempt(delivery, now)
        delivered = attempt.status_code is not None and 200 <= attempt.status_code < 300
        if delivered:
            outcome = webhooks.DELIVERED
        elif permanent or ctx.is_last_attempt:
            outcome = webhooks.FAILED
        else:
            outcome = webhooks.PENDING
        async with sessions.begin() as session:
            await webhooks.record_attempt(session, event_id, attempt, outcome=outcome)
        WEBHOOK_ATTEMPTS.labels(
            event_type=delivery.event_type,
            outcome="delivered" if delivered else ("failed" if permanent else "retry"),
        ).inc()
        if delivered:
            return
        reason = attempt.error or f"HTTP {attempt.status_code}"
        if outcome == webhooks.FAILED:
            raise PermanentJobError(reason)
        raise WebhookDeliveryError(reason)

    async def _attempt(self, delivery: Delivery, now: datetime) -> tuple[AttemptRecord, bool]:
        """Send once. Returns the log record and whether the failure is final."""
        started = time.monotonic()

        def record(status: int | None = None, excerpt: str = "", error: str = "") -> AttemptRecord:
            return AttemptRecord(
                at=now,
                status_code=status,
                response_excerpt=excerpt,
                error=error,
                duration_ms=int((time.monotonic() - started) * 1000),
            )

        try:
            request = build_request(delivery, now)
        except (UnsafeUrlError, ValueError) as exc:
            return record(error=str(exc)), True
        timeout = self._runtime.settings.webhook_timeout_seconds
        try:
            # httpx2's timeouts bound each phase; this bounds the whole exchange, so a
            # merchant that trickles its answer cannot hold a worker slot for long.
            async with asyncio.timeout(timeout):
                response = await self._http().send(request, stream=True)
                try:
                    body = await _read_limited(response)
                finally:
                    await response.aclose()
        except UnsafeUrlError as exc:
            return record(error=str(exc)), True
        except TimeoutError:
            return record(error=f"timed out after {timeout:g} s"), False
        except httpx2.HTTPError as exc:
            return record(error=f"{type(exc).__name__}: {exc}".rstrip(": ")), False
        except OSError as exc:
            return record(error=f"{type(exc).__name__}: {exc}"), False
        excerpt = body[:EXCERPT_BYTES].decode("utf-8", "replace")[: webhooks.EXCERPT_CHARS]
        return record(status=response.status_code, excerpt=excerpt), False


def build_request(delivery: Delivery, now: datetime) -> httpx2.Request:
    """The signed request for one attempt. ``UnsafeUrlError``/``ValueError`` if it cannot be
    sent at all (bad URL or method, no signing secret)."""
    parse_callback_url(delivery.url)
    method = delivery.method.upper()
    if method not in webhooks.METHODS:
        raise ValueError(f"callback method must be GET or POST, not {delivery.method!r}")
    if delivery.signing_secret is None:
        raise ValueError("no signing secret: the merchant has no service to sign with")
    key = signing_key(delivery.signing_secret)
    url = httpx2.URL(delivery.url.strip()).copy_with(fragment=None)
    existing = url.query.decode("ascii")
    fields = {k: v for k, v in delivery.fields.items() if k != SIGN_FIELD}
    if method == "GET":
        # `sign` covers every parameter the merchant's script will see in $_GET, its own fixed
        # ones from the URL included; ours come later in the query, so they win a name clash
        # both here and in PHP.
        covered = dict(parse_qsl(existing, keep_blank_values=True))
        covered.update(fields)
    else:
        covered = fields
    fields[SIGN_FIELD] = form_signature(covered, key)
    encoded = urlencode(list(fields.items()))
    # identity: the excerpt we log is read raw, and a compressed answer could be a bomb.
    headers = {"webhook-id": delivery.event_id, "accept-encoding": "identity"}
    if method == "GET":
        query = f"{existing}&{encoded}" if existing else encoded
        url = url.copy_with(query=query.encode("ascii"))
        # Sign what goes on the wire, after any normalisation of the merchant's own query.
        signed_content = url.query.decode("ascii")
        content = None
    else:
        signed_content = encoded
        content = encoded.encode("ascii")
        headers["content-type"] = "application/x-www-form-urlencoded"
    timestamp = int(now.timestamp())
    headers["webhook-timestamp"] = str(timestamp)
    headers["webhook-signature"] = Webhook(key).sign(
        delivery.event_id, datetime.fromtimestamp(timestamp, UTC), signed_content
    )
    return httpx2.Request(method, url, content=content, headers=headers)


async def _read_limited(response: httpx2.Response) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) >= MAX_RESPONSE_BYTES:
            # Dropping the rest closes this connection rather than reading a huge body.
            break
    return bytes(body)


def _parse_time(value: Any, default: datetime) -> datetime:
    if not isinstance(value, str):
        return default
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return default
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
