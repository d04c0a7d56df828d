"""Settings: one frozen object, read once from the environment and passed explicitly."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from docpulse.logs import LOG_FORMATS, LogFormat

MiB = 1024 * 1024
EVENT_LOOPS: Final = ("asyncio", "uvloop", "auto")  # EVENT_LOOP's values (app/eventloop.py)


class SettingsError(ValueError):
    """An environment variable holds a value docpulse cannot use."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    # REDIS_URL: redis://, rediss:// (TLS) or unix:// URL of arq's queue, and by default of the
    # records and the event bus too
    redis_url: str = "redis://127.0.0.1:6379/0"
    # RECORDS_REDIS_URL: the records, history, events and caps on another Redis than the queue
    # (empty: REDIS_URL); docpulse/connections.py `Servers`
    records_redis_url: str = ""
    # ENQUEUE_SWEEP_INTERVAL: seconds between a worker's looks for accepted jobs not yet on arq's
    # queue (an upload or retry whose enqueue was lost), older than this (store/pending.py)
    enqueue_sweep_interval_s: float = 5.0
    # REDIS_SSL_CERT_REQS: none | optional | required, for rediss:// URLs. Heroku Redis uses
    # self-signed certificates, so its documented setting is "none".
    redis_ssl_cert_reqs: str = "none"
    # REDIS_CLUSTER_URL: any node of a Redis/Valkey Cluster (the rest is discovered) for the
    # records and the event bus, whose events are then SPUBLISHed (before RECORDS_REDIS_URL;
    # arq's queue stays on REDIS_URL); empty: no cluster
    redis_cluster_url: str = ""
    # REDIS_RETRY: seconds a job's Redis calls keep retrying before the attempt is handed back
    redis_retry_s: float = 5.0
    # DOCPULSE_NAMESPACE: prefix of every key, channel and queue name (tests use a per-run one)
    namespace: str = ""
    # MAX_DOCUMENT_BYTES: larger documents are refused (upload) or fail in parse (arq)
    max_document_bytes: int = 20 * MiB
    # MAX_TEXT_CHARS: characters of text one document may have after parsing; more fails it
    # (as many as MAX_DOCUMENT_BYTES by default, so any plain text file that fits passes)
    max_text_chars: int = 20 * MiB
    # MAX_CHUNKS: chunks one document may split into; more fails it in chunk
    max_chunks: int = 50_000
    # MAX_PDF_PAGES: pages one PDF may have; more fails it before any page is read
    max_pdf_pages: int = 5_000
    # MAX_PDF_CONTENT_BYTES: bytes a PDF's page content may expand to, all pages together (and
    # the most any one compressed stream may expand to); more fails it (a decompression bomb)
    max_pdf_content_bytes: int = 16 * MiB
    # MAX_HTML_DEPTH: elements one inside another in HTML (and HTML in Markdown); deeper fails it
    # before the HTML parser sees it (its time grows with the square of the depth)
    max_html_depth: int = 512
    # MAX_HTML_ELEMENTS: elements (start tags) in HTML; more fails it before the HTML parser sees
    # it (parsing takes about 600 bytes per element)
    max_html_elements: int = 500_000
    # PARSE_CONCURRENCY: documents one worker parses at once (other jobs wait for a turn): parsing
    # is where a document takes the most memory (up to about 1 GB for 20 MiB of HTML)
    parse_concurrency: int = 4
    # CHUNK_SIZE / CHUNK_OVERLAP: characters per chunk and shared between neighbours
    chunk_size: int = 1000
    chunk_overlap: int = 200
    # EMBEDDER: "hashing" (lexical, no downloads) or "sentence-transformers:<model path or name>"
    embedder: str = "hashing"
    # EMBED_DIM: dimensions of the hashing embedder; EMBED_BATCH: chunks per batch
    embed_dim: int = 384
    embed_batch: int = 64
    # JOB_TIMEOUT: seconds one stage may run before it fails as timed out
    job_timeout_s: float = 300.0
    # MAX_ATTEMPTS: attempts of a stage interrupted by a shutdown or a Redis outage
    max_attempts: int = 3
    # WORKER_CONCURRENCY: jobs one worker process runs at once
    worker_concurrency: int = 16
    # WORKER_POLL_DELAY: seconds between the worker's looks at the queue (a new document's parse
    # job waits up to this long; a worker with a free slot starts a stage's successor at once)
    poll_delay_s: float = 0.05
    # WORKER_SHUTDOWN_WAIT: seconds a worker told to stop (SIGTERM) lets running jobs finish
    # before it hands them back to run again; under the 30 s a Procfile host allows
    shutdown_wait_s: int = 20
    # WORKER_HEALTH_CHECK_INTERVAL: seconds between the worker's `arq --check` heartbeats
    health_check_interval_s: float = 10.0
    # WORKER_LIVENESS_TTL: seconds after a worker's last sign of life (it gives one every third
    # of this) before another worker takes it for dead and runs its jobs again
    liveness_ttl_s: float = 30.0
    # PROGRESS_INTERVAL: minimum seconds between two progress events of one job
    progress_interval_s: float = 0.1
    # RESULT_TTL: seconds a finished document and its data are kept (0 = forever)
    result_ttl_s: int = 0
    # HISTORY_LENGTH / HISTORY_TTL: events kept per tenant for resuming (about; trimmed in
    # blocks), and seconds an idle tenant's history lives
    history_length: int = 10_000
    history_ttl_s: int = 86_400
    # OUTBOX_SIZE: events a process holds while Redis is unreachable (progress is dropped first)
    outbox_size: int = 1_000
    # PUBLISH_EVENTS: 0 turns event publishing off (benchmarks measure its cost)
    publish_events: bool = True
    # WORKER_METRICS_PORT: port of the worker's Prometheus /metrics (0 = off)
    worker_metrics_port: int = 0

    # --- web process (app/, `docpulse web`) -----------------------------------------------------
    # SECRET_KEY: HS256 key that signs API tokens; `docpulse web` refuses to start without it
    # (unless DOCPULSE_DEV=1, where a key is generated for the run). Never printed by repr().
    secret_key: str = dataclasses.field(default="", repr=False)
    # REDIS_MAX_CONNECTIONS: connections the web process's request pool may open (records, tickets,
    # uploads, arq's enqueues); the hub's subscription has its own. REDIS_POOL_TIMEOUT: seconds a
    # request waits for one of them before it is answered 503 unavailable (never a hang)
    redis_max_connections: int = 50
    redis_pool_timeout_s: float = 2.0
    # METRICS_TOKEN: when set, /metrics answers only `Authorization: Bearer <METRICS_TOKEN>`
    # (its series name tenants); unset, /metrics is open. Never printed by repr().
    metrics_token: str = dataclasses.field(default="", repr=False)
    # DOCPULSE_DEV: 1 under `docpulse dev` (allows a generated SECRET_KEY)
    docpulse_dev: bool = False
    # PORT: port `docpulse web` listens on (Heroku sets it)
    port: int = 8000
    # EVENT_LOOP: the web process's event loop: asyncio, uvloop (not installed: an error at
    # start-up; `pip install 'docpulse[uvloop]'`) or auto (uvloop when installed, else asyncio).
    # The default is what bench/README.md's "Event loop" measured.
    event_loop: str = "asyncio"
    # WEB_CONCURRENCY: web processes `docpulse web` runs on PORT together (Heroku sets it from the
    # dyno's size); 1 is a single process, as without a supervisor
    web_concurrency: int = 1
    # ALLOWED_ORIGINS: comma-separated origins (scheme://host[:port]) that may open /ws besides
    # the app's own (same Host)
    allowed_origins: str = ""
    # WS_QUEUE_SIZE: events buffered per WebSocket; a socket past it is closed with 4008 too slow
    ws_queue_size: int = 256
    # WS_TICKET_TTL: seconds a single-use WebSocket ticket (POST /api/ws-tickets) stays valid
    ws_ticket_ttl: int = 30
    # HUB_PROBE_INTERVAL / HUB_PROBE_TIMEOUT: how often the web process checks that its Redis
    # subscription still delivers (a probe through it), and how long a probe may take; a deaf
    # subscription is reconnected and what it missed is read from history
    hub_probe_interval: float = 10.0
    hub_probe_timeout: float = 3.0
    # HUB_PARTITIONS: on a cluster (REDIS_CLUSTER_URL), the subscription clients of the web
    # process's hub: the 16384 slots fold into this many ranges, one glide client each
    # (docpulse/shards.py), whatever the number of tenants
    hub_partitions: int = 4
    # LOG_FORMAT: json (one object per line) or text (readable); unset: text under DOCPULSE_DEV,
    # else json. The worker reads it too.
    log_format: str = ""
    # Per-tenant caps (0 = no cap). Over one, an upload is answered 429 with Retry-After and a
    # socket is closed with 1013 try again later; nothing already accepted is dropped.
    # TENANT_MAX_SOCKETS: WebSockets one tenant holds open on one web process
    tenant_max_sockets: int = 1000
    # TENANT_UPLOADS_PER_MINUTE: uploads one tenant makes per minute, all web processes together
    tenant_uploads_per_minute: int = 600
    # TENANT_MAX_IN_FLIGHT: documents of one tenant queued or running at once
    tenant_max_in_flight: int = 1000
    # TENANT_MAX_STORED_BYTES: bytes of uploaded documents one tenant keeps stored
    tenant_max_stored_bytes: int = 1024 * MiB
    # UPLOAD_TIMEOUT: seconds an upload's whole body may take to arrive (then 408)
    upload_timeout_s: float = 120.0
    # HEADER_TIMEOUT: seconds a client has to send a request's line and headers, a WebSocket
    # handshake included, and to send the next request on a kept-alive connection
    header_timeout_s: float = 10.0
    # MAX_UPLOAD_PARTS: parts a multipart upload may have (it needs one, `file`); the next one is
    # refused before it is read (each part costs the event loop Python time)
    max_upload_parts: int = 8
    # MAX_PART_HEADER_BYTES: bytes one header line of a multipart part may have
    max_part_header_bytes: int = 4096

    def validate_web(self) -> None:
        if self.event_loop not in EVENT_LOOPS:
            raise SettingsError(f"EVENT_LOOP must be one of {', '.join(EVENT_LOOPS)}")
        for name in (
            "port",
            "web_concurrency",
            "ws_queue_size",
            "ws_ticket_ttl",
            "redis_max_connections",
            "max_upload_parts",
            "max_part_header_bytes",
        ):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name.upper()} must be at least 1")
        for name in (
            "tenant_max_sockets",
            "tenant_uploads_per_minute",
            "tenant_max_in_flight",
            "tenant_max_stored_bytes",
        ):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name.upper()} must be 0 (no cap) or more")
        for name in ("upload_timeout_s", "header_timeout_s", "redis_pool_timeout_s"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{_ENV_NAMES[name]} must be more than 0 seconds")

    @property
    def log_style(self) -> LogFormat:
        if self.log_format in LOG_FORMATS:
            return self.log_format
        return "text" if self.docpulse_dev else "json"

    @property
    def records_url(self) -> str:
        """Where the records live: RECORDS_REDIS_URL, else REDIS_URL."""
        return self.records_redis_url or self.redis_url

    @property
    def allowed_origin_set(self) -> frozenset[str]:
        return frozenset(
            o.strip().rstrip("/") for o in self.allowed_origins.split(",") if o.strip()
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for field in dataclasses.fields(cls):
            name = _ENV_NAMES.get(field.name, field.name.upper())
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            values[field.name] = _parse(name, raw, type(getattr(_DEFAULTS, field.name)))
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.redis_ssl_cert_reqs not in ("none", "optional", "required"):
            raise SettingsError("REDIS_SSL_CERT_REQS must be none, optional or required")
        if self.log_format not in ("", *LOG_FORMATS):
            raise SettingsError("LOG_FORMAT must be json or text")
        if self.enqueue_sweep_interval_s <= 0:
            raise SettingsError("ENQUEUE_SWEEP_INTERVAL must be more than 0 seconds")
        if self.liveness_ttl_s <= 0:
            raise SettingsError("WORKER_LIVENESS_TTL must be more than 0 seconds")
        if not 0 <= self.chunk_overlap < self.chunk_size:
            raise SettingsError("CHUNK_OVERLAP must be at least 0 and less than CHUNK_SIZE")
        for name in (
            "max_document_bytes",
            "max_text_chars",
            "max_chunks",
            "max_pdf_pages",
            "max_pdf_content_bytes",
            "max_html_depth",
            "max_html_elements",
            "parse_concurrency",
            "embed_dim",
            "embed_batch",
            "max_attempts",
            "history_length",
            "outbox_size",
            "hub_partitions",
        ):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name.upper()} must be at least 1")


_ENV_NAMES = {
    "namespace": "DOCPULSE_NAMESPACE",
    "redis_retry_s": "REDIS_RETRY",
    "job_timeout_s": "JOB_TIMEOUT",
    "poll_delay_s": "WORKER_POLL_DELAY",
    "shutdown_wait_s": "WORKER_SHUTDOWN_WAIT",
    "health_check_interval_s": "WORKER_HEALTH_CHECK_INTERVAL",
    "liveness_ttl_s": "WORKER_LIVENESS_TTL",
    "progress_interval_s": "PROGRESS_INTERVAL",
    "result_ttl_s": "RESULT_TTL",
    "history_ttl_s": "HISTORY_TTL",
    "upload_timeout_s": "UPLOAD_TIMEOUT",
    "header_timeout_s": "HEADER_TIMEOUT",
    "redis_pool_timeout_s": "REDIS_POOL_TIMEOUT",
    "enqueue_sweep_interval_s": "ENQUEUE_SWEEP_INTERVAL",
}
_DEFAULTS = Settings()


def _parse(name: str, raw: str, kind: type) -> object:
    try:
        if kind is bool:
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes", "on")
        return kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
