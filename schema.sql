-- jobwire schema. `jobwire migrate` applies this file under an advisory lock; every statement is
-- idempotent, so running it twice (or on every deploy) is safe. Later changes are appended as
-- further idempotent statements (ADD COLUMN IF NOT EXISTS, ...), never by editing the ones above.

CREATE TABLE IF NOT EXISTS api_keys (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant      text        NOT NULL,
    -- sha256 of the key: keys are 256-bit random tokens, so a fast hash is enough and lets every
    -- request authenticate with one indexed lookup.
    key_hash    bytea       NOT NULL UNIQUE,
    key_prefix  text        NOT NULL,
    is_admin    boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE IF NOT EXISTS jobs (
    id               uuid             PRIMARY KEY,
    tenant           text             NOT NULL,
    type             text             NOT NULL,
    params           jsonb            NOT NULL,
    priority         text             NOT NULL CHECK (priority IN ('normal', 'high')),
    status           text             NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    progress         double precision NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    message          text,
    result           jsonb,
    error            jsonb,
    attempts         integer          NOT NULL DEFAULT 0,
    max_attempts     integer          NOT NULL CHECK (max_attempts >= 1),
    webhook_url      text,
    -- set by a cancel of a running job; the worker running it sees the flag and interrupts it
    cancel_requested boolean          NOT NULL DEFAULT false,
    -- seq of the newest row in job_events: every change bumps it in the same statement, which
    -- row-locks the job and so keeps the per-job sequence gapless under concurrency
    last_seq         integer          NOT NULL DEFAULT 0,
    created_at       timestamptz      NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    updated_at       timestamptz      NOT NULL DEFAULT now()
);

-- listing: newest first per tenant, keyset pagination on (created_at, id)
CREATE INDEX IF NOT EXISTS jobs_tenant_created_idx ON jobs (tenant, created_at DESC, id DESC);
-- admin listing across tenants
CREATE INDEX IF NOT EXISTS jobs_created_idx ON jobs (created_at DESC, id DESC);
-- the reconciler's scan: only unfinished jobs, a small slice of the table
CREATE INDEX IF NOT EXISTS jobs_unfinished_idx ON jobs (id) WHERE status IN ('pending', 'running');

CREATE TABLE IF NOT EXISTS job_events (
    job_id    uuid             NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq       integer          NOT NULL,
    type      text             NOT NULL
              CHECK (type IN ('created', 'started', 'progress', 'retrying', 'completed', 'failed', 'cancelled')),
    status    text             NOT NULL,
    progress  double precision NOT NULL,
    message   text,
    -- the result on 'completed', the error on 'failed' and 'retrying'
    data      jsonb,
    at        timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, seq)
);

CREATE TABLE IF NOT EXISTS idempotency_keys (
    tenant       text        NOT NULL,
    key          text        NOT NULL,
    request_hash bytea       NOT NULL,
    job_id       uuid        NOT NULL,
    -- NULL while the first request is still deciding its answer (Prefer: wait)
    status_code  smallint,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_created_idx ON idempotency_keys (created_at);

-- live queue statistics (dashboard, /metrics): jobs finished in the last minute
CREATE INDEX IF NOT EXISTS jobs_finished_idx ON jobs (finished_at) WHERE finished_at IS NOT NULL;
