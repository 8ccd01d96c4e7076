"""How long finished jobs are kept: the retention policy, free of SQL.

A `completed` job is kept JOBWIRE_RETENTION_COMPLETED_S after it finished, a `failed` or
`cancelled` one JOBWIRE_RETENTION_FAILED_S, unless its job type sets its own (`job_type(...,
retention_s=..., failed_retention_s=...)`). Unfinished jobs have no retention: they are never
purged.

A settled batch follows its status the way a job does: a `completed` batch is kept
JOBWIRE_RETENTION_COMPLETED_S after it settled, a `cancelled` one JOBWIRE_RETENTION_FAILED_S (a
batch has no type, so the job types' own retentions do not apply to it). That is only a floor:
a batch also stays as long as any of its jobs does (a batch holding a failed job is kept until
that job is purged), so no job is ever left naming a batch that is gone. An unsettled batch is
never purged.

The purge itself (bounded rounds, the one-runner lock, vacuum) is `workers/purger.py`; its SQL is
in `jobwire/jobstore.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from jobwire.batch import BatchStatus
from jobwire.job import Status

if TYPE_CHECKING:
    from jobwire.config import Settings
    from jobwire.registry import Registry

# the statuses a job can be purged in, and which of the two retentions each one follows
FINISHED = (Status.COMPLETED.value, Status.FAILED.value, Status.CANCELLED.value)
# the statuses a settled batch can be purged in: every one but `running`
SETTLED_BATCH = (BatchStatus.COMPLETED.value, BatchStatus.CANCELLED.value)

# the tables one purge deletes from, in the order their rows are counted and reported
PURGED_TABLES = (
    "jobs",
    "job_events",
    "deliveries",
    "delivery_attempts",
    "idempotency_keys",
    "batches",
    "batch_checks",
)


@dataclass(frozen=True, slots=True)
class Rule:
    """Jobs of `type` in `status` go `keep_s` seconds after they finished."""

    status: str
    type: str
    keep_s: float


@dataclass(frozen=True, slots=True)
class BatchRule:
    """Settled batches in `status` go `keep_s` seconds after they settled, once no job of theirs is
    left."""

    status: str
    keep_s: float


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    completed_s: float
    failed_s: float
    # job type -> (its completed retention, its failed/cancelled retention); None: the default
    by_type: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings, registry: Registry) -> RetentionPolicy:
        return cls(
            completed_s=settings.retention_completed_s,
            failed_s=settings.retention_failed_s,
            by_type={
                jt.name: (jt.retention_s, jt.failed_retention_s)
                for jt in registry
                if jt.retention_s is not None or jt.failed_retention_s is not None
            },
        )

    def keep_s(self, status: str, job_type: str) -> float:
        """How long after it finished a job of `job_type` that ended in `status` is kept. A type
        the registry does not know (its module was removed) follows the defaults."""
        if status not in FINISHED:
            raise ValueError(f"a {status!r} job is never purged")
        completed, failed = self.by_type.get(job_type, (None, None))
        if status == Status.COMPLETED.value:
            return self.completed_s if completed is None else completed
        return self.failed_s if failed is None else failed

    def rules(self, kinds: Iterable[tuple[str, str]]) -> list[Rule]:
        """One rule per (status, type) of finished jobs found in the database."""
        return [Rule(status, job_type, self.keep_s(status, job_type)) for status, job_type in kinds]

    def batch_keep_s(self, status: str) -> float:
        """How long after it settled a batch that ended in `status` is kept (at least: its jobs
        keep it longer). The default retention of a job in the same status: a batch has no type."""
        if status not in SETTLED_BATCH:
            raise ValueError(f"a {status!r} batch is never purged")
        return self.completed_s if status == BatchStatus.COMPLETED.value else self.failed_s

    def batch_rules(self) -> list[BatchRule]:
        return [BatchRule(status, self.batch_keep_s(status)) for status in SETTLED_BATCH]
