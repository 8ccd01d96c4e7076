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

and what a service that submits jobs imports (the client, `jobwire.client`), and a webhook receiver
(`verify_webhook`):

    from jobwire import Client

    with Client("http://127.0.0.1:8000", api_key="jw_…") as jobs:
        job = jobs.submit("images.resize", {"url": "https://example.com/a.png"})
        print(jobs.wait(job.id).result)
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from jobwire.client import AsyncClient, Client
from jobwire.context import JobContext
from jobwire.errors import ApiError, JobwireError, PermanentError, WaitTimeout, WebhookVerificationError
from jobwire.registry import Backoff, job_type
from jobwire.webhooks.signing import verify as verify_webhook

try:
    __version__ = _version("jobwire")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "ApiError",
    "AsyncClient",
    "Backoff",
    "Client",
    "JobContext",
    "JobwireError",
    "PermanentError",
    "WaitTimeout",
    "WebhookVerificationError",
    "__version__",
    "job_type",
    "verify_webhook",
]
