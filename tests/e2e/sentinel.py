"""A throwaway Redis with Sentinel: a primary, a replica and three Sentinels on free ports, each a
process of its own, never the shared Redis. `prefix` runs them elsewhere (`ip netns exec C`)."""

from __future__ import annotations

import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from tests.conftest import free_port

MASTER = "jobwire"
# Sentinel sees a silent primary as down after this long, then the quorum (2 of 3) fails it over
DOWN_AFTER_MS = 1000


def _sentinel_command() -> list[str]:
    # Debian's redis-sentinel package is a link to redis-server started in Sentinel mode
    if shutil.which("redis-sentinel"):
        return ["redis-sentinel"]
    return ["redis-server", "--sentinel"]


class SentinelRedis:
    def __init__(self, host: str = "127.0.0.1", prefix: tuple[str, ...] = ()) -> None:
        self.host = host
        self.prefix = list(prefix)
        self.dir = Path(tempfile.mkdtemp(prefix="jobwire-sentinel-"))
        self.primary_port, self.replica_port = free_port(), free_port()
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def sentinels(self) -> str:
        """The value of JOBWIRE_REDIS_SENTINELS."""
        return ",".join(f"{self.host}:{port}" for port in self.sentinel_ports)

    def _spawn(self, port: int, command: list[str]) -> None:
        log = (self.dir / f"{port}.log").open("wb")
        self.procs[port] = subprocess.Popen([*self.prefix, *command], stdout=log, stderr=subprocess.STDOUT)

    def _server(self, port: int, *extra: str) -> None:
        # the queue's truth is PostgreSQL: nothing on disk; diskless replication starts at once
        self._spawn(
            port,
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                self.host,
                # no password: clients from the test's private network must be let in
                "--protected-mode",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                "--repl-diskless-sync",
                "yes",
                "--repl-diskless-sync-delay",
                "0",
                *extra,
            ],
        )

    def start(self) -> None:
        self._server(self.primary_port)
        self._server(self.replica_port, "--replicaof", self.host, str(self.primary_port))
        # each Sentinel is told the others and the replica up front (with ids chosen here), so it
        # can fail over at once instead of discovering them over several hello periods
        ids = [secrets.token_hex(20) for _ in self.sentinel_ports]
        for i, port in enumerate(self.sentinel_ports):
            lines = [
                f"port {port}",
                f"bind {self.host}",
                "protected-mode no",
                f"dir {self.dir}",
                f"sentinel myid {ids[i]}",
                f"sentinel monitor {MASTER} {self.host} {self.primary_port} 2",
                f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}",
                f"sentinel failover-timeout {MASTER} 5000",
                f"sentinel known-replica {MASTER} {self.host} {self.replica_port}",
                *(
                    f"sentinel known-sentinel {MASTER} {self.host} {other} {ids[j]}"
                    for j, other in enumerate(self.sentinel_ports)
                    if j != i
                ),
            ]
            conf = self.dir / f"sentinel-{port}.conf"
            conf.write_text("\n".join(lines) + "\n")
            self._spawn(port, [*_sentinel_command(), str(conf)])
        self._until(self._ready, 20, "the replica to sync and every Sentinel to see it")

    def _ready(self) -> bool:
        replica = self._client(self.replica_port).info("replication")
        if replica.get("master_link_status") != "up":
            return False
        for port in self.sentinel_ports:
            state = self._client(port).sentinel_master(MASTER)
            if state["num-slaves"] < 1 or state["num-other-sentinels"] < 2:
                return False
        return True

    def _client(self, port: int) -> Any:
        """A synchronous client (Any: redis-py types its sync and async answers as one union)."""
        return redis.Redis(
            host=self.host, port=port, socket_timeout=1, socket_connect_timeout=1, decode_responses=True
        )

    def primary(self) -> tuple[str, int] | None:
        """The primary the Sentinels name (the first that answers)."""
        for port in self.sentinel_ports:
            try:
                found = self._client(port).sentinel_get_master_addr_by_name(MASTER)
            except redis.RedisError:
                continue
            if found:
                return str(found[0]), int(found[1])
        return None

    def kill(self, port: int) -> None:
        proc = self.procs[port]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def wait_new_primary(self, old: tuple[str, int], timeout: float) -> tuple[str, int]:
        self._until(lambda: self.primary() not in (old, None), timeout, "Sentinel to promote a replica")
        new = self.primary()
        assert new is not None
        # promoted means answering as a primary: writes go through from here on
        self._until(
            lambda: self._client(new[1]).info("replication")["role"] == "master", timeout, "the new primary"
        )
        return new

    @staticmethod
    def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if check():
                    return
            except (redis.RedisError, OSError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(0.05)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
