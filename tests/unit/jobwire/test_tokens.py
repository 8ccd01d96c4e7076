"""jobwire/tokens.py: job-scoped stream tokens."""

from __future__ import annotations

import uuid

from jobwire.tokens import StreamTokens


def test_stream_tokens_are_job_scoped_and_expire() -> None:
    tokens = StreamTokens("secret", ttl_s=3600)
    job = str(uuid.uuid4())
    token = tokens.issue(job, "acme", 7, now=1_000_000)
    assert tokens.verify(token, now=1_000_000) == (job, "acme", 7, False)  # with the key that minted it
    assert tokens.issue(job, "acme", 7, now=1_000_100) == token  # stable within a window
    assert tokens.issue(job, "acme", 8, now=1_000_000) != token
    # past its expiry it still names its grant: the api then asks whether the job can still run
    assert tokens.verify(token, now=1_000_000 + 3 * 3600) == (job, "acme", 7, True)
    assert StreamTokens("other", 3600).verify(token, now=1_000_000) is None
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    assert tokens.verify(tampered, now=1_000_000) is None
    assert tokens.verify("garbage", now=1_000_000) is None
