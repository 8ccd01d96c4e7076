"""Settings, read once from the environment (and an optional `.env` file)."""

from __future__ import annotations

import re
import sys
import tempfile
from functools import cached_property
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, IPvAnyNetwork, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

NAMESPACE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# the secret key signs stream tokens: shorter than this, it could be guessed or brute-forced
SECRET_KEY_MIN_CHARS = 32
GENERATE_SECRET_KEY = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def parse_addresses(value: str) -> list[tuple[str, int]]:
    """`host:port,host:port` (an IPv6 host in brackets) as (host, port) pairs; empty: none."""
    addresses: list[tuple[str, int]] = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{item!r} is not host:port (a list reads host:port,host:port)")
        addresses.append((host, int(port)))
    return addresses


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JOBWIRE_", env_file=".env", extra="ignore")

    database_url: str = "postgresql://postgres@127.0.0.1:5432/jobwire"
    # what needs a session of its own (migrate, LISTEN/NOTIFY, session-level advisory locks) goes
    # here, never through a transaction pooler; set (to another URL) it says that database_url is
    # such a pooler (PgBouncer, pool_mode=transaction), and that pool keeps no prepared statements
    database_direct_url: str | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    # `host:port,host:port`: find the Redis primary through these Sentinels (redis_url then gives
    # only the database number and credentials) and follow its failovers
    redis_sentinels: str = ""
    redis_sentinel_master: str = "mymaster"
    namespace: str = "jobwire"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    secret_key: str | None = None

    webhook_allow_private: bool = False
    webhook_backoff_base_s: float = Field(default=5, gt=0)
    webhook_backoff_factor: float = Field(default=3, ge=1)
    webhook_backoff_max_s: float = Field(default=21600, gt=0)
    webhook_backoff_max_attempts: int = Field(default=10, ge=1)
    # one attempt: a deadline for the whole exchange, and how much of the answer is read
    webhook_timeout_s: float = Field(default=10, gt=0)
    webhook_max_response_bytes: int = Field(default=64 * 1024, ge=0)
    # an endpoint failing without a single success for this long is disabled
    webhook_disable_after_s: float = Field(default=24 * 3600, gt=0)
    # after a secret rotation the old secret keeps signing beside the new one this long
    webhook_secret_grace_s: float = Field(default=24 * 3600, ge=0)
    # dispatcher: how long a claimed delivery stays leased (must outlast an attempt's deadline; a
    # dispatcher killed mid-attempt leaves its deliveries due again after this), attempts in flight
    # in one dispatcher, and at most this many of them to one endpoint (or one job URL's origin)
    webhook_lease_s: float = Field(default=30, gt=0)
    webhook_concurrency: int = Field(default=256, ge=1)
    webhook_endpoint_concurrency: int = Field(default=32, ge=1)
    # the longest the dispatcher sleeps without a notification (retries coming due wake it sooner)
    webhook_poll_s: float = Field(default=5, gt=0)
    sse_heartbeat_s: float = Field(default=15, gt=0)
    # the longest the api holds an answer (`Prefer: wait=N`, `?wait=N`): API.md's 60, or less where
    # a proxy in front cuts idle requests sooner (0: never held)
    max_wait_s: int = Field(default=60, ge=0, le=60)
    # events queued for one SSE/WebSocket client before it counts as too slow and is closed
    stream_queue_max: int = Field(default=2048, ge=16)
    log_format: Literal["console", "json"] | None = None
    # where workers and dispatchers touch their liveness file (`jobwire health worker|dispatcher`)
    liveness_dir: str = Field(default_factory=tempfile.gettempdir)
    log_level: str = "info"

    # api
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # requests per second per API key, per api process (a token bucket of rate_limit_burst); 0: off
    rate_limit_per_s: float = Field(default=1000, ge=0)
    rate_limit_burst: int = Field(default=2000, ge=1)
    # SSE streams and WebSockets open at once per API key (or per job token's tenant), per api process
    max_streams_per_key: int = Field(default=1000, ge=1)
    # failed authentications (a bad key or stream token) per client address in a window, per api
    # process; past it the address is answered 429 without its keys being looked up. 0: off
    auth_failure_limit: int = Field(default=20, ge=0)
    auth_failure_window_s: float = Field(default=60, gt=0)
    # proxies (addresses or CIDRs, a JSON list) whose X-Forwarded-For names the client; empty: the
    # peer of the connection is the client, and X-Forwarded-For is ignored (anyone can send it)
    trusted_proxies: list[IPvAnyNetwork] = Field(default_factory=list)
    access_log: bool = True
    # origins whose pages may call the api, follow SSE streams and open WebSockets (comma-separated
    # `scheme://host[:port]`, or `*`); empty: no CORS headers, and no Origin check on WebSockets
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # where clients reach the api (e.g. https://jobs.example.com): makes status_url, events_url and
    # Location absolute; unset: they are paths
    public_url: str | None = None
    db_pool_max: int = Field(default=10, ge=1)
    # how long a stream token lives once its job is terminal (while the job can run, it stays valid)
    stream_token_ttl_s: int = Field(default=3600, ge=1)
    shutdown_timeout_s: float = Field(default=10, ge=0)

    # worker
    worker_concurrency: int = Field(default=10, ge=1)
    # the longest an idle worker sleeps before it reads the queue again. Enqueued jobs wake idle
    # workers at once (pub/sub on <namespace>:wake), so this bounds only what announces itself to
    # nobody: a dead worker's job whose lease ran out, a wake lost while Redis was unreachable
    worker_poll_delay_s: float = Field(default=1.0, gt=0)
    # how long a running job's ARQ lease lives without a heartbeat: a SIGKILLed worker's job runs
    # again this long after the kill, whatever the job's own timeout
    worker_lease_s: float = Field(default=15, ge=3)
    worker_grace_s: int = Field(default=25, ge=0)
    reconcile_interval_s: float = Field(default=5, gt=0)
    # how often every api and worker process cancels the unstarted jobs past their expiry (a job
    # about to start is checked by its start, whatever this says)
    expiry_sweep_s: float = Field(default=1.0, gt=0)
    # how often every api and worker process settles waiting jobs whose dependencies ended without
    # settling them (a process died between the two); the usual path settles them at once
    dependency_sweep_s: float = Field(default=5.0, gt=0)
    # how often every api and worker process looks for batches whose jobs have all ended (their
    # terminal event and webhook wait for it at most this long)
    batch_settle_s: float = Field(default=0.25, gt=0)
    # the longest a scheduler (in every api and worker process) sleeps before it looks at the
    # schedules again; it wakes for the soonest due slot by itself, and at once for a change made
    # through its own api
    scheduler_poll_s: float = Field(default=1.0, gt=0)
    progress_interval_s: float = Field(default=0.25, ge=0)
    # extra modules that register job types, besides everything in workers/jobs/
    job_modules: list[str] = Field(default_factory=list)
    # jobs of one tenant running at once across all workers (0: no cap); a job over the cap stays
    # pending and is tried again after tenant_cap_retry_s
    tenant_max_running: int = Field(default=0, ge=0)
    tenant_cap_retry_s: float = Field(default=1.0, gt=0)

    # retention: a finished job (with its events, deliveries and idempotency key) is deleted this
    # long after it finished; a job type may set its own (job_type(retention_s=…))
    retention_completed_s: float = Field(default=7 * 24 * 3600, gt=0)
    # failed and cancelled jobs: kept longer, someone may still be looking into them
    retention_failed_s: float = Field(default=30 * 24 * 3600, gt=0)
    # how often a worker runs a purge pass (one worker at a time across the deployment)
    purge_interval_s: float = Field(default=60, gt=0)

    @field_validator("namespace")
    @classmethod
    def _namespace_is_a_key_prefix(cls, value: str) -> str:
        if not NAMESPACE_RE.match(value):
            raise ValueError("must be 1-64 characters of A-Z, a-z, 0-9, '_', '.' or '-'")
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins_from_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins_are_origins(cls, value: list[str]) -> list[str]:
        return [origin if origin == "*" else _origin(origin) for origin in value]

    @field_validator("public_url")
    @classmethod
    def _public_url_is_a_base(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError(f"{value!r} is not an http(s) URL without query (e.g. https://jobs.example.com)")
        return value.rstrip("/")

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinels_are_addresses(cls, value: str) -> str:
        parse_addresses(value)
        return value

    @field_validator("secret_key")
    @classmethod
    def _secret_key_is_long(cls, value: str | None) -> str | None:
        if not value:
            return None  # unset (or empty): `dev` generates one, `api` refuses to start
        if len(value) < SECRET_KEY_MIN_CHARS:
            raise ValueError(
                f"JOBWIRE_SECRET_KEY is {len(value)} characters; it must be at least "
                f"{SECRET_KEY_MIN_CHARS} (generate one with: {GENERATE_SECRET_KEY})"
            )
        return value

    @model_validator(mode="after")
    def _lease_outlasts_an_attempt(self) -> Settings:
        if self.webhook_lease_s <= self.webhook_timeout_s:
            raise ValueError(
                f"JOBWIRE_WEBHOOK_LEASE_S ({self.webhook_lease_s}) must be longer than "
                f"JOBWIRE_WEBHOOK_TIMEOUT_S ({self.webhook_timeout_s})"
            )
        return self

    @cached_property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return parse_addresses(self.redis_sentinels)

    @property
    def session_database_url(self) -> str:
        """The URL of connections that need a session: the direct one, else the only one."""
        return self.database_direct_url or self.database_url

    @property
    def behind_pooler(self) -> bool:
        """database_url is a transaction pooler: a direct URL other than it is configured."""
        return bool(self.database_direct_url) and self.database_direct_url != self.database_url

    @cached_property
    def resolved_log_format(self) -> Literal["console", "json"]:
        if self.log_format is not None:
            return self.log_format
        return "console" if sys.stderr.isatty() else "json"

    def require_secret_key(self) -> str:
        if not self.secret_key:
            raise SystemExit(
                "JOBWIRE_SECRET_KEY is not set: it signs stream tokens and must be the same on every api "
                f"process (generate one with: {GENERATE_SECRET_KEY})"
            )
        return self.secret_key


def _origin(text: str) -> str:
    """An origin as browsers send it in `Origin`: lower-case scheme and host, the port only when it
    is not the scheme's default, no path."""
    parts = urlsplit(text.strip())
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or port == -1
        or parts.path not in ("", "/")
    ):
        raise ValueError(f"{text!r} is not an origin: use scheme://host[:port], e.g. https://app.example.com")
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, default) else "")
