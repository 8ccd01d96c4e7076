"""jobwire: an asyncio job service on ARQ, PostgreSQL and Redis.

This package is what a job author imports (the job-type SDK below) and what the api (`service/`)
and the workers (`workers/`) share: settings, database and Redis access, the job store, the event
vocabulary, the webhook wing, and the `jobwire` command.

    from pydantic import BaseModel
    from jobwire import JobContext, job_type

    class Resize(BaseModel):
        url: str

    @job_type("images.resize", timeout=120)
    async def resize(ctx: JobContext, params: Resize) -> dict[str, str]:
        ctx.progress(50, "downloaded")
        return {"url": params.url}
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from jobwire.context import JobContext
from jobwire.errors import JobwireError, PermanentError
from jobwire.registry import Backoff, job_type

try:
    __version__ = _version("jobwire")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["Backoff", "JobContext", "JobwireError", "PermanentError", "__version__", "job_type"]
