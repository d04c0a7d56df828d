"""The worker's Prometheus metrics (served on WORKER_METRICS_PORT when it is set)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

JOBS_FINISHED = Counter(
    "docpulse_jobs_finished_total",
    "Stage jobs that ended, by stage and outcome (done or failed).",
    ["stage", "outcome"],
)
JOBS_INTERRUPTED = Counter(
    "docpulse_jobs_interrupted_total",
    "Stage attempts interrupted by a shutdown or a Redis outage, to be run again.",
    ["stage"],
)
STAGE_SECONDS = Histogram(
    "docpulse_stage_duration_seconds",
    "Wall time of one stage attempt that ended in done or failed.",
    ["stage"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
QUEUE_JOBS = Gauge(
    "docpulse_queue_jobs",
    "Jobs waiting in (or deferred on) the arq queue, read at each worker heartbeat.",
)
