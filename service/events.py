"""The fan-out hub: one Redis pub/sub connection per api process, demultiplexed by job id to the
in-process listeners (long-polls now; SSE and WebSocket clients build on the same hub).

A listener registers *before* it reads the job from PostgreSQL, so an event committed in between is
never missed. Pub/sub is not durable: when the connection drops, every listener is woken to re-read
PostgreSQL, and listeners re-read on a timer anyway, so a lost message costs latency, never
correctness.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Iterator
from typing import Any

import orjson
from redis.asyncio import Redis

from common.keys import Keys
from common.logs import get_logger
from common.models import TERMINAL
from common.redis_client import UNAVAILABLE as REDIS_UNAVAILABLE
from common.redis_client import create_redis

log = get_logger("jobwire.hub")


class Listener:
    """Woken on every event of one job. `terminal` is set once a terminal event arrived."""

    def __init__(self) -> None:
        self.changed = asyncio.Event()
        self.terminal = False
        self.last: dict[str, Any] | None = None

    def notify(self, event: dict[str, Any] | None) -> None:
        if event is not None:
            self.last = event
            if event.get("status") in TERMINAL:
                self.terminal = True
        self.changed.set()

    async def wait(self, timeout: float) -> bool:
        """Until the next change (True) or the timeout (False)."""
        try:
            await asyncio.wait_for(self.changed.wait(), timeout)
        except TimeoutError:
            return False
        self.changed.clear()
        return True


class EventHub:
    def __init__(self, redis_url: str, keys: Keys) -> None:
        self.redis_url = redis_url
        self.keys = keys
        self._listeners: dict[str, set[Listener]] = {}
        self.connected = asyncio.Event()

    @contextlib.contextmanager
    def listen(self, job_id: str) -> Iterator[Listener]:
        listener = Listener()
        self._listeners.setdefault(job_id, set()).add(listener)
        try:
            yield listener
        finally:
            listeners = self._listeners.get(job_id)
            if listeners is not None:
                listeners.discard(listener)
                if not listeners:
                    del self._listeners[job_id]

    def dispatch(self, raw: bytes) -> None:
        try:
            event = orjson.loads(raw)
            job_id = event["job_id"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("ignoring a malformed event message")
            return
        for listener in self._listeners.get(job_id, ()):
            listener.notify(event)

    def _wake_all(self) -> None:
        for listeners in self._listeners.values():
            for listener in listeners:
                listener.notify(None)

    async def run(self) -> None:
        """Subscribe, dispatch, and reconnect with backoff for as long as the process runs."""
        delay = 0.2
        while True:
            redis: Redis = create_redis(self.redis_url, socket_timeout=None)
            try:
                async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self.keys.events_channel)
                    self.connected.set()
                    delay = 0.2
                    # anything published while we were away is only in PostgreSQL: re-read it
                    self._wake_all()
                    while True:
                        message = await pubsub.get_message(timeout=None)
                        if message is not None and message["type"] == "message":
                            self.dispatch(message["data"])
            except REDIS_UNAVAILABLE as exc:
                if self.connected.is_set():
                    log.warning("event subscription lost, reconnecting", error=str(exc))
                self.connected.clear()
                self._wake_all()
            finally:
                with contextlib.suppress(Exception):
                    await redis.aclose()
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, 5.0)
