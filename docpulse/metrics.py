"""Prometheus metrics of the shared contract (the bus), in prometheus-client's default registry.

Web and worker metrics live beside their own code; these are counted in whichever process publishes.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_PUBLISHED = Counter(
    "docpulse_events_published_total", "Job events published to Redis Pub/Sub."
)
PUBLISH_FAILURES = Counter(
    "docpulse_event_publish_failures_total",
    "Job events not published at once because Redis failed (they wait in the outbox).",
)
PUBLISH_SECONDS = Histogram(
    "docpulse_event_publish_seconds",
    "Time to publish one job event to Redis.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
EVENTS_MALFORMED = Counter(
    "docpulse_events_malformed_total",
    "Messages on a job channel that were not valid job events and were skipped.",
)
OUTBOX_SIZE = Gauge(
    "docpulse_outbox_events",
    "Events waiting in this process's outbox for Redis to come back.",
)
OUTBOX_DROPPED = Counter(
    "docpulse_outbox_dropped_total",
    "Events dropped from a full outbox, by phase (progress events go first).",
    ["phase"],
)
