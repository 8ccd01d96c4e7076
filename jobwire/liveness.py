"""Liveness of the worker and dispatcher processes, for `jobwire health worker|dispatcher` (a
container healthcheck). The process touches a file each time its main loop completes a turn that
reached its stores (a worker's queue poll, a dispatcher's claim); the check reads the file's age. A
file, not a Redis key, so that the check runs in the process's own container and answers for that
process alone, whatever the number of replicas."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Literal

Role = Literal["worker", "dispatcher"]
ROLES: tuple[Role, ...] = ("worker", "dispatcher")
# a beat touches the file at most this often: a busy loop turns many times a second
BEAT_EVERY_S = 1.0


def path_for(directory: str, namespace: str, role: Role) -> Path:
    return Path(directory) / f"jobwire-{namespace}-{role}.alive"


class Liveness:
    def __init__(self, directory: str, namespace: str, role: Role) -> None:
        self.path = path_for(directory, namespace, role)
        self._last = 0.0

    def beat(self) -> None:
        now = time.monotonic()
        if now - self._last < BEAT_EVERY_S:
            return
        self._last = now
        try:
            self.path.touch()
        except OSError:
            # an unwritable directory shows as "not alive" in the check, which names the path; the
            # process itself goes on working
            self._last = now + 60

    def clear(self) -> None:
        """At shutdown: the check fails at once instead of after the file ages."""
        with contextlib.suppress(OSError):
            self.path.unlink()


def check(directory: str, namespace: str, role: Role, max_age_s: float) -> tuple[bool, str]:
    """(alive, a sentence saying why) for the process of this role and namespace on this host."""
    path = path_for(directory, namespace, role)
    try:
        age = time.time() - os.stat(path).st_mtime
    except FileNotFoundError:
        return False, f"no {role} has reported in (no {path}): not started, still starting, or stopped"
    except OSError as exc:
        return False, f"cannot read {path}: {exc.strerror}"
    if age > max_age_s:
        return False, f"the {role} last completed a loop {age:.0f} s ago (more than {max_age_s:g} s)"
    return True, f"the {role} completed a loop {age:.1f} s ago"
