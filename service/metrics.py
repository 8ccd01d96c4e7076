"""Prometheus metrics of the api process, served at GET /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from jobwire.jobmetrics import JobMetricsCollector

REGISTRY = CollectorRegistry(auto_describe=True)
# jobs finished by type and outcome, and their durations: recorded by the workers in Redis
JOB_OUTCOMES = JobMetricsCollector()
REGISTRY.register(JOB_OUTCOMES)

REQUESTS = Counter(
    "jobwire_http_requests_total", "HTTP requests answered", ["method", "route", "status"], registry=REGISTRY
)
REQUEST_SECONDS = Histogram(
    "jobwire_http_request_duration_seconds",
    "Time to answer an HTTP request (to the first byte of streams)",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
JOBS_SUBMITTED = Counter(
    "jobwire_jobs_submitted_total", "Jobs accepted", ["type", "priority"], registry=REGISTRY
)
SSE_CONNECTIONS = Gauge("jobwire_sse_connections", "Open SSE streams", registry=REGISTRY)
WS_CONNECTIONS = Gauge("jobwire_websocket_connections", "Open WebSocket connections", registry=REGISTRY)
HUB_EVENTS = Counter(
    "jobwire_events_received_total",
    "Job events received from Redis pub/sub by this api process",
    registry=REGISTRY,
)
EVENTS_DELIVERED = Counter(
    "jobwire_events_delivered_total", "Job events written to clients", ["transport"], registry=REGISTRY
)
SLOW_CLIENTS = Counter(
    "jobwire_slow_clients_closed_total",
    "Streams closed because the client fell too far behind",
    ["transport"],
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge("jobwire_queue_depth", "Pending jobs, by priority", ["priority"], registry=REGISTRY)
JOBS_RUNNING = Gauge("jobwire_jobs_running", "Running jobs", registry=REGISTRY)
DELIVERIES_PENDING = Gauge(
    "jobwire_webhook_deliveries_pending", "Webhook deliveries not yet delivered or dead", registry=REGISTRY
)
DELIVERIES_DUE = Gauge(
    "jobwire_webhook_deliveries_due",
    "Webhook deliveries due now and waiting for a dispatcher",
    registry=REGISTRY,
)
# what the database holds on disk (indexes and TOAST included): alert on growth, and see the
# retention purge keep it flat
TABLE_BYTES = Gauge("jobwire_table_bytes", "Size on disk of each jobwire table", ["table"], registry=REGISTRY)
DATABASE_BYTES = Gauge("jobwire_database_bytes", "Size on disk of the whole database", registry=REGISTRY)


_series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def request_series(method: str, route: str, status: int) -> tuple[Counter, Histogram]:
    """The request counter and duration histogram of one (method, route, status), looked up once:
    prometheus-client's labels() is a measurable cost on the hottest path."""
    key = (method, route, status)
    series = _series.get(key)
    if series is None:
        series = _series[key] = (
            REQUESTS.labels(method, route, str(status)),
            REQUEST_SECONDS.labels(method, route),
        )
    return series


_submitted: dict[tuple[str, str], Counter] = {}


def count_submitted(job_type: str, priority: str) -> None:
    """JOBS_SUBMITTED, its child looked up once per (type, priority): prometheus-client's labels()
    is a measurable cost on the hottest path."""
    child = _submitted.get((job_type, priority))
    if child is None:
        child = _submitted[(job_type, priority)] = JOBS_SUBMITTED.labels(job_type, priority)
    child.inc()
