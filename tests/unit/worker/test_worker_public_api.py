"""The names other packages import from the worker and the outbox stay where they are."""

from __future__ import annotations

import inspect

import smsgate.worker
from smsgate.services import webhooks
from smsgate.store import jobs
from smsgate.worker import runner


def test_worker_package_surface() -> None:
    assert sorted(smsgate.worker.__all__) == [
        "Handler",
        "JobContext",
        "PermanentJobError",
        "WebhookSender",
        "Worker",
        "default_handlers",
        "new_worker_id",
    ]
    assert runner.default_handlers is smsgate.worker.default_handlers


def test_outbox_and_webhook_signatures() -> None:
    enqueue = inspect.signature(jobs.enqueue)
    assert list(enqueue.parameters) == [
        "session",
        "kind",
        "payload",
        "now",
        "run_at",
        "max_attempts",
        "dedupe_key",
    ]
    emit = inspect.signature(webhooks.emit)
    assert list(emit.parameters) == [
        "session",
        "merchant_id",
        "service_id",
        "event_type",
        "url",
        "method",
        "payload",
        "now",
    ]
    assert emit.parameters["method"].default == "POST"
    assert list(inspect.signature(webhooks.resend).parameters) == ["session", "event_id", "now"]
