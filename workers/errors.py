"""Exceptions a job function may raise to steer the runtime."""

from __future__ import annotations


class PermanentError(Exception):
    """The job cannot succeed by trying again (bad input, a 4xx from a dependency): it fails at once,
    whatever attempts are left. Any other exception is retried with backoff until the job type's
    `max_attempts` are spent."""


class JobTimeout(Exception):
    """The job ran longer than its type's timeout. Retried like any other error."""


class WorkerLost(Exception):
    """The worker running the job stopped heartbeating (killed, crashed, partitioned); the job runs
    again on another worker."""


class WorkerShutdown(Exception):
    """The worker was shut down before the job finished; the job runs again, without losing an
    attempt."""


class UnknownJobType(PermanentError):
    """The job's type is not registered on this worker."""


class InvalidParams(PermanentError):
    """The stored params no longer validate against the job type's model."""


class ResultNotSerializable(PermanentError):
    """The job function returned something that is not JSON."""
