"""Job types: an async function plus a pydantic model for its params, with its own timeout, attempt
budget and retry backoff. The api validates submissions with the same model before storing them.

    from pydantic import BaseModel
    from jobwire import JobContext, job_type

    class Resize(BaseModel):
        url: str
        width: int

    @job_type("images.resize", timeout=120, max_attempts=5)
    async def resize(ctx: JobContext, params: Resize) -> dict[str, str]:
        ctx.progress(50, "downloaded")
        return {"url": "..."}

Every module in workers/jobs/ is imported at start-up, as are the modules named in
JOBWIRE_JOB_MODULES.
"""

from __future__ import annotations

import importlib
import pkgutil
import random
import re
import typing
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from jobwire.context import JobContext

# the job types that ship with jobwire (demo.sleep, demo.fail, report.generate)
SHIPPED_JOBS = "workers.jobs"

JobFunction = Callable[["JobContext", Any], Coroutine[Any, Any, Any]]
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry n (n = 1 after the first failure): min(max_s, base_s * factor**(n-1)),
    spread by ±jitter so that jobs failing together do not retry together."""

    base_s: float = 2.0
    factor: float = 3.0
    max_s: float = 600.0
    jitter: float = 0.2

    def delay(self, n: int, rng: random.Random | None = None) -> float:
        raw = min(self.max_s, self.base_s * self.factor ** max(0, n - 1))
        spread = (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        return max(0.0, raw * spread)


@dataclass(frozen=True, slots=True)
class JobType:
    name: str
    fn: JobFunction
    params_model: type[BaseModel]
    timeout_s: float
    max_attempts: int
    backoff: Backoff
    description: str
    # how long a finished job of this type is kept (None: JOBWIRE_RETENTION_COMPLETED_S and
    # JOBWIRE_RETENTION_FAILED_S); see jobwire/retention.py
    retention_s: float | None = None
    failed_retention_s: float | None = None


class Registry:
    def __init__(self) -> None:
        self._types: dict[str, JobType] = {}

    def add(self, jt: JobType) -> None:
        existing = self._types.get(jt.name)
        if existing is not None and existing.fn is not jt.fn:
            raise ValueError(f"job type {jt.name!r} is registered twice")
        self._types[jt.name] = jt

    def get(self, name: str) -> JobType | None:
        return self._types.get(name)

    def names(self) -> list[str]:
        return sorted(self._types)

    def __iter__(self) -> typing.Iterator[JobType]:
        return iter(self._types.values())

    def max_timeout_s(self) -> float:
        return max((jt.timeout_s for jt in self._types.values()), default=300.0)


REGISTRY = Registry()


def _params_model(fn: JobFunction) -> type[BaseModel]:
    hints = typing.get_type_hints(fn)
    hints.pop("return", None)
    params = list(hints.values())
    if len(params) != 2 or not (isinstance(params[1], type) and issubclass(params[1], BaseModel)):
        raise TypeError(
            f"{fn.__qualname__}: a job function is `async def fn(ctx: JobContext, params: Model)` where"
            " Model is a pydantic BaseModel"
        )
    return params[1]


def job_type(
    name: str,
    *,
    timeout: float = 300,
    max_attempts: int = 3,
    backoff: Backoff | None = None,
    retention_s: float | None = None,
    failed_retention_s: float | None = None,
    registry: Registry = REGISTRY,
) -> Callable[[JobFunction], JobFunction]:
    """Register an async function as job type `name` (dotted lowercase, e.g. "reports.monthly").

    `retention_s` keeps this type's completed jobs that long after they finished, and
    `failed_retention_s` its failed and cancelled ones (None: the deployment's settings)."""
    if not NAME_RE.match(name):
        raise ValueError(f"invalid job type name {name!r}: use dotted lowercase, e.g. 'images.resize'")
    if timeout <= 0 or max_attempts < 1:
        raise ValueError("timeout must be > 0 and max_attempts >= 1")
    for keep in (retention_s, failed_retention_s):
        if keep is not None and not keep > 0:  # `not >` also refuses NaN
            raise ValueError("retention_s and failed_retention_s must be > 0 seconds (or None)")

    def register(fn: JobFunction) -> JobFunction:
        registry.add(
            JobType(
                name=name,
                fn=fn,
                params_model=_params_model(fn),
                timeout_s=float(timeout),
                max_attempts=max_attempts,
                backoff=backoff or Backoff(),
                description=(fn.__doc__ or "").strip().split("\n\n")[0],
                retention_s=None if retention_s is None else float(retention_s),
                failed_retention_s=None if failed_retention_s is None else float(failed_retention_s),
            )
        )
        return fn

    return register


def load_job_types(extra_modules: Iterable[str] = ()) -> Registry:
    """Import every module of the shipped job package and the extra modules (JOBWIRE_JOB_MODULES),
    which registers their job types. Both sides load job types this way, by name: the api needs
    their params models, not the worker runtime."""
    shipped = importlib.import_module(SHIPPED_JOBS)
    for info in pkgutil.iter_modules(shipped.__path__, SHIPPED_JOBS + "."):
        importlib.import_module(info.name)
    for module in extra_modules:
        importlib.import_module(module)
    return REGISTRY
