"""Every exception jobwire defines, in one tree under `JobwireError`.

Job functions raise `PermanentError` (or let anything else escape, which is retried); the runtime
records the others as a job's `error.type`. Errors of the backends themselves (PostgreSQL, Redis)
are not wrapped: `jobwire.db.UNAVAILABLE` and `jobwire.redis_client.UNAVAILABLE` name the driver
errors that mean "unreachable right now", and the two never overlap, so an outage is always blamed
on the right one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobwire.resources import Job


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


# ---- raised by the client (jobwire.Client, jobwire.AsyncClient) ------------------------------------


class ApiError(JobwireError):
    """The api answered with a problem document (RFC 9457): `status`, `type`, `title`, `detail`,
    and for a 422 the invalid fields in `errors` (each with `loc`, `msg`, `type`)."""

    def __init__(
        self,
        status: int,
        *,
        type: str = "about:blank",
        title: str = "",
        detail: str = "",
        errors: list[dict[str, Any]] | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.errors = errors or []
        self.retry_after = retry_after  # seconds, when the api said when to try again (429, 503)
        lines = [f"{status} {title}: {detail}".rstrip(": ")]
        lines += [f"  {'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg', '')}" for e in self.errors]
        super().__init__("\n".join(lines))


class WaitTimeout(JobwireError, TimeoutError):
    """`wait()` reached its deadline before the job ended; `job` is the job as last read."""

    def __init__(self, job: Job) -> None:
        super().__init__("the job did not end within the time given")
        self.job = job


class WebhookVerificationError(JobwireError):
    """A webhook's signature, id or timestamp did not verify (`jobwire.verify_webhook`)."""
