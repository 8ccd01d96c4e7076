"""jobwire/registry.py: job types, their names, params models and retry backoff."""

from __future__ import annotations

import random

import pytest
from pydantic import BaseModel

from jobwire.context import JobContext
from jobwire.registry import Backoff, Registry, job_type


class P(BaseModel):
    n: int


def test_backoff_grows_exponentially_up_to_the_cap_with_jitter() -> None:
    b = Backoff(base_s=5, factor=3, max_s=100, jitter=0.2)
    rng = random.Random(7)
    for n, raw in ((1, 5), (2, 15), (3, 45), (4, 100), (9, 100)):
        delays = [b.delay(n, rng) for _ in range(200)]
        assert min(delays) >= raw * 0.8 - 1e-9 and max(delays) <= raw * 1.2 + 1e-9
        assert max(delays) - min(delays) > raw * 0.2  # jitter spreads retries out


def test_registry_requires_a_params_model_and_a_good_name() -> None:
    registry = Registry()

    @job_type("good.name", registry=registry)
    async def good(ctx: JobContext, params: P) -> int:
        return params.n

    jt = registry.get("good.name")
    assert jt is not None and jt.params_model is P and jt.max_attempts == 3

    with pytest.raises(ValueError):
        job_type("Bad Name", registry=registry)
    with pytest.raises(TypeError):

        @job_type("no.model", registry=registry)
        async def no_model(ctx: JobContext, params: dict) -> None:  # type: ignore[type-arg]
            return None

    with pytest.raises(ValueError):

        @job_type("good.name", registry=registry)
        async def twice(ctx: JobContext, params: P) -> int:
            return 0
