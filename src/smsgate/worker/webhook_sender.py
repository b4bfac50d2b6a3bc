"""The ``webhook.deliver`` handler: send callbacks, log the attempts, decide what follows.

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

Batches: the worker hands over up to a few hundred deliveries at once. Their events and
secrets are loaded in one read; all are sent at once, at most ``per_origin`` at a time to one
merchant's host over kept-alive connections (safe_transport.CallbackConnections); their
attempts are logged and their jobs finished set-wise, in one transaction for all that ended
within ``flush_seconds`` of each other, so a slow merchant holds back only its own callbacks.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import parse_qsl, quote, quote_plus

import httpcore2
import httpx2
from sqlalchemy.ext.asyncio import AsyncSession

from smsgate.domain.backoff import RetryPolicy
from smsgate.domain.signing import SIGN_FIELD, signing_key
from smsgate.domain.url_safety import UnsafeUrlError, parse_callback_url
from smsgate.metrics import WEBHOOK_ATTEMPTS
from smsgate.runtime import Runtime
from smsgate.services import webhooks
from smsgate.services.webhooks import DELIVER_KIND, AttemptOutcome, AttemptRecord, Delivery
from smsgate.store.jobs import ClaimedJob
from smsgate.worker.handler import (
    DONE,
    BatchContext,
    BatchWrite,
    JobContext,
    JobOutcome,
    PermanentJobError,
)
from smsgate.worker.safe_transport import USER_AGENT, CallbackConnections

__all__ = [
    "DELIVER_KIND",
    "WEBHOOK_RETRY",
    "CallbackRequest",
    "WebhookDeliveryError",
    "WebhookSender",
    "build_request",
]

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
    """The handler; one per worker, holding the pooled connections (``aclose`` closes them).

    A batch handler (``run_batch``); called with one job (``handler.Handler``) it delivers
    that one and records its attempt itself.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        connections: CallbackConnections | None = None,
        per_origin: int = 16,
        flush_seconds: float = 0.5,
    ) -> None:
        self._runtime = runtime
        self._connections = connections
        self._owns_connections = connections is None
        self._per_origin = per_origin
        self._flush_seconds = flush_seconds

    async def aclose(self) -> None:
        if self._connections is not None and self._owns_connections:
            await self._connections.aclose()
            self._connections = None

    def _pool(self) -> CallbackConnections:
        if self._connections is None:
            self._connections = CallbackConnections(
                allow_private=self._runtime.settings.webhook_allow_private,
                per_origin=self._per_origin,
            )
        return self._connections

    # --- a batch ---------------------------------------------------------------------------

    async def run_batch(self, jobs: Sequence[ClaimedJob], batch: BatchContext) -> None:
        now = batch.now()
        async with self._runtime.sessions() as session:
            deliveries = await webhooks.load_deliveries(
                session, [str(job.payload["event_id"]) for job in jobs]
            )
        settled: list[tuple[ClaimedJob, JobOutcome]] = []
        expired: list[str] = []
        to_send: list[tuple[ClaimedJob, Delivery]] = []
        max_age = timedelta(seconds=self._runtime.settings.webhook_max_age_seconds)
        for job in jobs:
            event_id = str(job.payload["event_id"])
            delivery = deliveries.get(event_id)
            if delivery is None:
                settled.append((job, JobOutcome(f"no webhook event {event_id}", permanent=True)))
            elif delivery.status != webhooks.PENDING:
                # Delivered already (by this job before a crash, or by a re-send), or failed.
                settled.append((job, DONE))
            elif now - _parse_time(job.payload.get("enqueued_at"), delivery.created_at) >= max_age:
                expired.append(event_id)
                reason = f"not delivered within {max_age}; given up"
                settled.append((job, JobOutcome(reason, permanent=True)))
                _attempts_counter(delivery.event_type, "expired").inc()
            else:
                to_send.append((job, delivery))
        if settled:
            await batch.finish(settled, _mark_failed(expired) if expired else None)

        pending = {asyncio.create_task(self._deliver(job, d)) for job, d in to_send}
        try:
            while pending:
                ended, pending = await asyncio.wait(pending, timeout=self._flush_seconds)
                if ended:
                    results = [task.result() for task in ended]
                    await batch.finish(
                        [(job, outcome) for job, _, outcome in results],
                        _record([logged for _, logged, _ in results]),
                    )
        finally:
            # Stopped (or failed) half way: the worker gives the unfinished jobs back, so
            # their sends must not go on behind its back.
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _deliver(
        self, job: ClaimedJob, delivery: Delivery
    ) -> tuple[ClaimedJob, AttemptOutcome, JobOutcome]:
        attempt, permanent = await self._attempt(delivery)
        status = attempt.status_code
        delivered = status is not None and 200 <= status < 300
        last = job.attempt >= job.max_attempts
        if delivered:
            event_outcome, job_outcome = webhooks.DELIVERED, DONE
        else:
            reason = attempt.error or f"HTTP {status}"
            final = permanent or last
            event_outcome = webhooks.FAILED if final else webhooks.PENDING
            job_outcome = JobOutcome(reason, permanent=final)
        outcome = "delivered" if delivered else ("failed" if permanent else "retry")
        _attempts_counter(delivery.event_type, outcome).inc()
        return job, AttemptOutcome(delivery.event_id, attempt, event_outcome), job_outcome

    async def _attempt(self, delivery: Delivery) -> tuple[AttemptRecord, bool]:
        """Send once. Returns the log record and whether the failure is final."""
        now = self._runtime.clock.now()
        started = time.monotonic()

        def record(status: int | None = None, excerpt: str = "", error: str = "") -> AttemptRecord:
            return AttemptRecord(
                at=now,
                status_code=status,
                response_excerpt=excerpt,
                error=error,
                duration_ms=int((time.monotonic() - started) * 1000),
            )

        def start() -> None:
            nonlocal started
            started = time.monotonic()

        try:
            request = build_request(delivery, now)
        except (UnsafeUrlError, ValueError) as exc:
            return record(error=str(exc)), True
        timeout = self._runtime.settings.webhook_timeout_seconds
        try:
            # One bound on the whole exchange (connecting included), so a merchant that
            # trickles its answer cannot hold a slot for long.
            answer = await self._pool().send(
                request.origin, request.method_bytes, request.target, request.wire_headers(),
                request.content, timeout_seconds=timeout, limit=MAX_RESPONSE_BYTES,
                on_start=start,
            )  # fmt: skip
        except UnsafeUrlError as exc:
            return record(error=str(exc)), True
        except (TimeoutError, httpcore2.TimeoutException):
            return record(error=f"timed out after {timeout:g} s"), False
        except (httpcore2.NetworkError, httpcore2.ProtocolError, OSError) as exc:
            return record(error=f"{type(exc).__name__}: {exc}".rstrip(": ")), False
        excerpt = answer.body[:EXCERPT_BYTES].decode("utf-8", "replace")[: webhooks.EXCERPT_CHARS]
        return record(status=answer.status, excerpt=excerpt), False

    # --- one job (the plain handler interface) ---------------------------------------------

    async def __call__(self, payload: dict[str, Any], ctx: JobContext) -> None:
        one = _OneJob(ctx.runtime)
        await self.run_batch([ctx.job], one)
        if one.outcome.error is None:
            return
        if one.outcome.permanent:
            raise PermanentJobError(one.outcome.error)
        raise WebhookDeliveryError(one.outcome.error)


class _OneJob:
    """A batch of one whose job the worker finishes itself: only the writes happen here."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self.outcome: JobOutcome = JobOutcome("no outcome")

    @property
    def runtime(self) -> Runtime:
        return self._runtime

    def now(self) -> datetime:
        return self._runtime.clock.now()

    async def finish(
        self, outcomes: Sequence[tuple[ClaimedJob, JobOutcome]], write: BatchWrite | None = None
    ) -> None:
        if write is not None:
            async with self._runtime.sessions.begin() as session:
                await write(session)
        for _, outcome in outcomes:
            self.outcome = outcome


_counters: dict[tuple[str, str], Any] = {}


def _attempts_counter(event_type: str, outcome: str) -> Any:
    # labels() looks the child up under a lock each time; the few children are kept here.
    counter = _counters.get((event_type, outcome))
    if counter is None:
        if len(_counters) >= _CACHE_LIMIT:
            _counters.clear()
        counter = WEBHOOK_ATTEMPTS.labels(event_type=event_type, outcome=outcome)
        _counters[(event_type, outcome)] = counter
    return counter


def _record(logged: list[AttemptOutcome]) -> BatchWrite:
    async def write(session: AsyncSession) -> None:
        await webhooks.record_attempts(session, logged)

    return write


def _mark_failed(event_ids: list[str]) -> BatchWrite:
    async def write(session: AsyncSession) -> None:
        await webhooks.mark_failed_many(session, event_ids)

    return write


# --- the request ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CallbackRequest:
    """One attempt's request, signed, as it goes on the wire."""

    method: str
    url: httpx2.URL
    headers: dict[str, str]
    content: bytes
    origin: httpcore2.Origin
    target: bytes

    @property
    def method_bytes(self) -> bytes:
        return self.method.encode("ascii")

    def wire_headers(self) -> list[tuple[bytes, bytes]]:
        return [(k.encode("ascii"), v.encode("latin-1")) for k, v in self.headers.items()]

    def to_core(self) -> httpcore2.Request:
        """The request for ``CallbackConnections.request`` (which bounds the whole exchange,
        so there are no per-read timeouts to set up)."""
        return httpcore2.Request(
            self.method.encode("ascii"),
            httpcore2.URL(
                scheme=self.origin.scheme,
                host=self.origin.host,
                port=self.origin.port,
                target=self.target,
            ),
            headers=[(k.encode("ascii"), v.encode("latin-1")) for k, v in self.headers.items()],
            content=self.content,
        )


@dataclass(frozen=True)
class _Target:
    url: httpx2.URL  # without fragment
    origin: httpcore2.Origin
    host_header: str
    authorization: str | None


_targets: dict[str, _Target] = {}
_keys: dict[str, bytes] = {}
_CACHE_LIMIT: Final = 4096


def _target(raw_url: str) -> _Target:
    # Callbacks of one merchant share a URL: parse and check it once.
    target = _targets.get(raw_url)
    if target is not None:
        return target
    parsed = parse_callback_url(raw_url)
    url = httpx2.URL(raw_url.strip()).copy_with(fragment=None)
    port = url.port or (443 if parsed.scheme == "https" else 80)
    authorization = None
    if url.userinfo:
        # As httpx does: credentials in the URL are sent as basic authentication.
        token = base64.b64encode(f"{url.username}:{url.password}".encode()).decode("ascii")
        authorization = f"Basic {token}"
    target = _Target(
        url=url,
        origin=httpcore2.Origin(url.raw_scheme, url.raw_host, port),
        host_header=url.netloc.decode("ascii"),
        authorization=authorization,
    )
    if len(_targets) >= _CACHE_LIMIT:
        _targets.clear()
    _targets[raw_url] = target
    return target


def _signing_key(secret: str) -> bytes:
    key = _keys.get(secret)
    if key is None:
        key = signing_key(secret)
        if len(_keys) >= _CACHE_LIMIT:
            _keys.clear()
        _keys[secret] = key
    return key


def build_request(delivery: Delivery, now: datetime) -> CallbackRequest:
    """The signed request for one attempt. ``UnsafeUrlError``/``ValueError`` if it cannot be
    sent at all (bad URL or method, no signing secret)."""
    target = _target(delivery.url)
    method = delivery.method.upper()
    if method not in webhooks.METHODS:
        raise ValueError(f"callback method must be GET or POST, not {delivery.method!r}")
    if delivery.signing_secret is None:
        raise ValueError("no signing secret: the merchant has no service to sign with")
    key = _signing_key(delivery.signing_secret)
    url = target.url
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
    fields[SIGN_FIELD] = _form_signature(covered, key)
    encoded = _form_encode(fields)
    headers = {"host": target.host_header, "user-agent": USER_AGENT}
    if method == "GET":
        query = f"{existing}&{encoded}" if existing else encoded
        url = url.copy_with(query=query.encode("ascii"))
        # Sign what goes on the wire, after any normalisation of the merchant's own query.
        signed_content = url.query.decode("ascii")
        content = b""
    else:
        signed_content = encoded
        content = encoded.encode("ascii")
        headers["content-type"] = "application/x-www-form-urlencoded"
        headers["content-length"] = str(len(content))
    timestamp = str(int(now.timestamp()))
    mac = hmac.new(
        key, f"{delivery.event_id}.{timestamp}.{signed_content}".encode(), hashlib.sha256
    )
    headers["webhook-id"] = delivery.event_id
    headers["webhook-timestamp"] = timestamp
    headers["webhook-signature"] = "v1," + base64.b64encode(mac.digest()).decode("ascii")
    # identity: the excerpt we log is read raw, and a compressed answer could be a bomb.
    headers["accept-encoding"] = "identity"
    if target.authorization is not None:
        headers["authorization"] = target.authorization
    return CallbackRequest(
        method=method,
        url=url,
        headers=headers,
        content=content,
        origin=target.origin,
        target=url.raw_path,
    )


_PLAIN = re.compile(r"[A-Za-z0-9_.~-]*")


def _form_encode(fields: dict[str, str]) -> str:
    """``urlencode(fields)``, with the common plain names and values (digits, ids, status
    words) passed through as they are instead of through ``quote_plus``."""
    plain = _PLAIN.fullmatch
    return "&".join(
        (name if plain(name) else quote_plus(name))
        + "="
        + (value if plain(value) else quote_plus(value))
        for name, value in fields.items()
    )


def _form_signature(fields: dict[str, str], key: bytes) -> str:
    """``domain.signing.form_signature``, with plain names and values (what ``quote`` leaves
    as they are) not passed through ``quote``: the same string, a third of the cost."""
    plain = _PLAIN.fullmatch
    items = sorted(
        ((name, value) for name, value in fields.items() if name != SIGN_FIELD),
        key=lambda item: item[0].encode("utf-8"),
    )
    base = "&".join(
        (name if plain(name) else quote(name, safe=""))
        + "="
        + (value if plain(value) else quote(value, safe=""))
        for name, value in items
    )
    return hmac.new(key, base.encode("utf-8"), hashlib.sha256).hexdigest()


def _parse_time(value: Any, default: datetime) -> datetime:
    if not isinstance(value, str):
        return default
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return default
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
