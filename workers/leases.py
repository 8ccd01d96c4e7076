"""A claim's hold on its job's ARQ lease (the in-progress key, which holds the claim's token).

A claim can lose its lease before its run starts: the start waits on PostgreSQL (for as long as
the runtime's write patience when PostgreSQL is unreachable) and nothing renews a lease before the
run exists, so another worker may claim the job meanwhile and start it. The claim that lapsed must
then leave the job to that worker instead of taking it over as "lost": `hold` is checked right
before every write that starts or takes over a job, except while the claim is young (`held_until`):
nothing but the claim's own finish deletes a live lease, and nothing can set it again before it
expires, so within half the lease of its claim a start needs no round trip to know it holds it.
And a renewal extends only a lease that still holds the renewing run's token, so a run that was
taken over never keeps another claim's lease (perhaps a dead worker's) alive.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

from jobwire.keys import Keys
from workers.arq_worker import eval_script

# KEYS: the in-progress key; ARGV: the claim's token, the lease (ms). Renews the lease when it holds
# the token, takes it when nobody holds it; 1 when the claim holds the lease afterwards.
_HOLD_LUA = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 1
end
if not holder then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    return 1
end
return 0
"""

# KEYS: in-progress keys; ARGV: the lease (ms), then per key the token of the run renewing it (empty:
# a run without a claim token, which renews whatever holds the key).
_RENEW_LUA = """
for i, key in ipairs(KEYS) do
    local token = ARGV[i + 1]
    if token == '' or redis.call('GET', key) == token then
        redis.call('PEXPIRE', key, ARGV[1])
    end
end
return #KEYS
"""


def held_until(claimed_at: float, lease_s: float) -> float:
    """Until when (time.monotonic()) a claim asked for at `claimed_at` certainly holds its lease:
    half of it, a wide margin for clocks that disagree on how fast time goes."""
    return claimed_at + lease_s / 2


async def hold(redis: Redis, keys: Keys, job_id: str, token: str, lease_s: float) -> bool:
    """Whether the claim with `token` holds the job's lease (renewed, or taken when free)."""
    held = await eval_script(
        redis, _HOLD_LUA, [keys.arq_in_progress_key(job_id)], [token, int(lease_s * 1000)]
    )
    return bool(held)


async def renew(redis: Redis, keys: Keys, runs: Sequence[tuple[str, str | None]], lease_s: float) -> None:
    """Renew the leases of these (job id, claim token) runs, each only while it holds its token."""
    if not runs:
        return
    await eval_script(
        redis,
        _RENEW_LUA,
        [keys.arq_in_progress_key(job_id) for job_id, _ in runs],
        [int(lease_s * 1000), *(token or "" for _, token in runs)],
    )
