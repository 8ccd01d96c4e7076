"""jobwire/retention.py: how long each kind of finished job, and each settled batch, is kept."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from jobwire.config import Settings
from jobwire.context import JobContext
from jobwire.registry import Registry, job_type
from jobwire.retention import BatchRule, RetentionPolicy, Rule


class P(BaseModel):
    n: int


def test_defaults_follow_the_outcome() -> None:
    settings = Settings(retention_completed_s=10, retention_failed_s=100)
    policy = RetentionPolicy.from_settings(settings, Registry())
    assert policy.keep_s("completed", "any.type") == 10
    assert policy.keep_s("failed", "any.type") == 100
    assert policy.keep_s("cancelled", "any.type") == 100
    assert Settings().retention_completed_s == 7 * 24 * 3600
    assert Settings().retention_failed_s == 30 * 24 * 3600
    assert Settings().purge_interval_s == 60


def test_a_job_type_overrides_either_retention() -> None:
    registry = Registry()

    @job_type("reports.monthly", retention_s=365 * 86400, registry=registry)
    async def monthly(ctx: JobContext, params: P) -> None:
        """Kept a year when it completes."""

    @job_type("pings.send", retention_s=60, failed_retention_s=3600, registry=registry)
    async def ping(ctx: JobContext, params: P) -> None:
        """Kept a minute, an hour when it fails."""

    settings = Settings(retention_completed_s=10, retention_failed_s=100)
    policy = RetentionPolicy.from_settings(settings, registry)
    assert policy.keep_s("completed", "reports.monthly") == 365 * 86400
    assert policy.keep_s("failed", "reports.monthly") == 100  # not overridden: the default
    assert policy.keep_s("completed", "pings.send") == 60
    assert policy.keep_s("cancelled", "pings.send") == 3600
    # a type no module registers any more (its jobs are still in the database): the defaults
    assert policy.rules([("completed", "gone.type"), ("failed", "pings.send")]) == [
        Rule("completed", "gone.type", 10),
        Rule("failed", "pings.send", 3600),
    ]


@pytest.mark.parametrize("status", ["pending", "running"])
def test_unfinished_jobs_have_no_retention(status: str) -> None:
    with pytest.raises(ValueError, match="never purged"):
        RetentionPolicy(10, 100).keep_s(status, "any.type")


@pytest.mark.parametrize("bad", [0, -1, float("nan")])
def test_a_retention_must_be_positive(bad: float) -> None:
    with pytest.raises(ValueError, match="retention"):
        job_type("x.y", retention_s=bad, registry=Registry())
    with pytest.raises(ValueError, match="retention"):
        job_type("x.y", failed_retention_s=bad, registry=Registry())
    with pytest.raises(ValueError):
        Settings(retention_completed_s=bad)


def test_a_settled_batch_is_kept_as_a_job_of_its_status_whatever_the_job_types() -> None:
    registry = Registry()

    @job_type("reports.monthly", retention_s=365 * 86400, failed_retention_s=1, registry=registry)
    async def monthly(ctx: JobContext, params: P) -> None:
        """A type's own retentions are its jobs', not their batch's."""

    policy = RetentionPolicy.from_settings(
        Settings(retention_completed_s=10, retention_failed_s=100), registry
    )
    assert policy.batch_keep_s("completed") == 10
    assert policy.batch_keep_s("cancelled") == 100
    assert policy.batch_rules() == [BatchRule("completed", 10), BatchRule("cancelled", 100)]
    with pytest.raises(ValueError, match="never purged"):
        policy.batch_keep_s("running")
