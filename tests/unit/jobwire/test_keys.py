"""jobwire/keys.py: every Redis key carries the namespace."""

from __future__ import annotations

import uuid

import pytest

from jobwire.config import Settings
from jobwire.keys import Keys


def test_keys_carry_the_namespace() -> None:
    keys = Keys("staging")
    job = uuid.uuid4()
    assert keys.queue == "staging:queue" and keys.events_channel == "staging:events"
    assert keys.arq_job_key(job) == f"arq:job:staging:{job}"
    assert keys.job_id_from_arq(keys.arq_job_id(job)) == str(job)
    with pytest.raises(ValueError):
        Keys("production").job_id_from_arq(keys.arq_job_id(job))


def test_namespace_must_be_a_safe_key_prefix() -> None:
    with pytest.raises(ValueError):
        Settings(namespace="has space")
    with pytest.raises(ValueError):
        Settings(namespace="a:b")
    assert Settings(namespace="prod-eu.1").namespace == "prod-eu.1"
