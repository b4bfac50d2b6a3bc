"""The worker: runs outbox jobs (webhook deliveries, and the kinds other packages register).

Public surface: ``Worker``, ``default_handlers``, ``Handler``, ``JobContext``,
``PermanentJobError``, ``WebhookSender``. See docs/worker.md.
"""

from smsgate.worker.handler import Handler, JobContext, PermanentJobError
from smsgate.worker.runner import Worker, default_handlers, new_worker_id
from smsgate.worker.webhook_sender import WebhookSender

__all__ = [
    "Handler",
    "JobContext",
    "PermanentJobError",
    "WebhookSender",
    "Worker",
    "default_handlers",
    "new_worker_id",
]
