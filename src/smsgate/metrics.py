"""Prometheus metrics, in one registry of our own (no process-global default collectors)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

MO_RECEIVED = Counter(
    "smsgate_mo_received",
    "MO messages received, by operator and outcome",
    ["operator", "outcome"],
    registry=REGISTRY,
)
MT_SUBMITTED = Counter(
    "smsgate_mt_submitted",
    "MT parts submitted to operators, by operator and outcome",
    ["operator", "outcome"],
    registry=REGISTRY,
)
DLR_RECEIVED = Counter(
    "smsgate_dlr_received",
    "Delivery receipts received, by operator and state",
    ["operator", "state"],
    registry=REGISTRY,
)
WEBHOOK_ATTEMPTS = Counter(
    "smsgate_webhook_attempts",
    "Webhook delivery attempts, by event type and outcome",
    ["event_type", "outcome"],
    registry=REGISTRY,
)
OUTBOX_DEPTH = Gauge(
    "smsgate_outbox_depth", "Jobs waiting in the outbox, by kind", ["kind"], registry=REGISTRY
)
OUTBOX_OLDEST_AGE = Gauge(
    "smsgate_outbox_oldest_age_seconds", "Age of the oldest waiting job", registry=REGISTRY
)
HTTP_LATENCY = Histogram(
    "smsgate_http_request_seconds",
    "HTTP request latency by route",
    ["method", "route", "status"],
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
