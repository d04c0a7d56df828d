"""Prometheus metrics of the shared contract (the bus), in prometheus-client's default registry.

Web and worker metrics live beside their own code; these are counted in whichever process publishes.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

EVENTS_PUBLISHED = Counter(
    "docpulse_events_published_total", "Job events published to Redis Pub/Sub."
)
PUBLISH_FAILURES = Counter(
    "docpulse_event_publish_failures_total",
    "Job events that could not be published because Redis failed.",
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
