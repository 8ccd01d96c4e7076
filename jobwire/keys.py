"""Every Redis key and channel jobwire uses, built in one place from the namespace.

ARQ hard-codes its per-job key prefixes (`arq:job:`, `arq:in-progress:`, `arq:retry:`), so the
namespace goes into the ARQ job id instead: `arq:job:<namespace>:<uuid>`. The queue itself is
`<namespace>:queue`. Two namespaces on one Redis therefore never share a queue, a job key or a
channel, and a worker of one namespace never sees another's jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from arq.constants import in_progress_key_prefix, job_key_prefix

# The one ARQ function every job runs through; the job type is read from PostgreSQL.
ARQ_FUNCTION = "jobwire.run"


@dataclass(frozen=True, slots=True)
class Keys:
    namespace: str

    @property
    def queue(self) -> str:
        return f"{self.namespace}:queue"

    @property
    def promote(self) -> str:
        """High-priority delayed jobs by run time: when one comes due the worker's poll re-scores its
        queue entry into the high-priority past (jobwire.queue.POLL_LUA)."""
        return f"{self.namespace}:promote"

    @property
    def wake_channel(self) -> str:
        """Pub/sub channel that wakes idle workers: published once per enqueued batch (with the
        earliest due time in ms), when a delayed job is moved, and when a worker leaves a job queued
        (handed back, deferred). A worker woken reads the queue at once; its poll is the fallback."""
        return f"{self.namespace}:wake"

    @property
    def events_channel(self) -> str:
        """Pub/sub channel carrying every committed job event of this namespace."""
        return f"{self.namespace}:events"

    @property
    def metrics_outcomes(self) -> str:
        return f"{self.namespace}:metrics:outcomes"

    @property
    def metrics_durations(self) -> str:
        return f"{self.namespace}:metrics:durations"

    @property
    def metrics_webhooks(self) -> str:
        return f"{self.namespace}:metrics:webhooks"

    @property
    def metrics_purged(self) -> str:
        return f"{self.namespace}:metrics:purged"

    def arq_job_id(self, job_id: UUID | str) -> str:
        return f"{self.namespace}:{job_id}"

    def job_id_from_arq(self, arq_job_id: str) -> str:
        prefix = f"{self.namespace}:"
        if not arq_job_id.startswith(prefix):
            raise ValueError(f"ARQ job {arq_job_id!r} does not belong to namespace {self.namespace!r}")
        return arq_job_id[len(prefix) :]

    def arq_job_key(self, job_id: UUID | str) -> str:
        return job_key_prefix + self.arq_job_id(job_id)

    def arq_in_progress_key(self, job_id: UUID | str) -> str:
        return in_progress_key_prefix + self.arq_job_id(job_id)

    def patterns(self) -> list[str]:
        """SCAN patterns matching every key of this namespace (for cleanup and inspection)."""
        return [f"{self.namespace}:*", f"arq:*:{self.namespace}:*"]
