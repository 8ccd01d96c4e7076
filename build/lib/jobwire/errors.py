"""Every exception jobwire defines, in one tree under `JobwireError`.

Job functions raise `PermanentError` (or let anything else escape, which is retried); the runtime
records the others as a job's `error.type`. Errors of the backends themselves (PostgreSQL, Redis)
are not wrapped: `jobwire.db.UNAVAILABLE` and `jobwire.redis_client.UNAVAILABLE` name the driver
errors that mean "unreachable right now", and the two never overlap, so an outage is always blamed
on the right one.
"""

from __future__ import annotations


class JobwireError(Exception):
    """The root of jobwire's own exceptions."""


# ---- raised by job functions, or recorded by the runtime as a job's error --------------------------


class PermanentError(JobwireError):
    """The job cannot succeed by trying again (bad input, a 4xx from a dependency): it fails at once,
    whatever attempts are left. Any other exception is retried with backoff until the job type's
    `max_attempts` are spent."""


class JobTimeout(JobwireError):
    """The job ran longer than its type's timeout. Retried like any other error."""


class WorkerLost(JobwireError):
    """The worker running the job stopped heartbeating (killed, crashed, partitioned); the job runs
    again on another worker."""


class WorkerShutdown(JobwireError):
    """The worker was shut down before the job finished; the job runs again, without losing an
    attempt."""


class UnknownJobType(PermanentError):
    """The job's type is not registered on this worker."""


class InvalidParams(PermanentError):
    """The stored params no longer validate against the job type's model."""


class ResultNotSerializable(PermanentError):
    """The job function returned something that is not JSON."""
