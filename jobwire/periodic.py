"""The loops every api and worker process runs beside its real work (the expiry sweep, the dependency
sweep, the batch settle loop): one step every interval, until cancelled."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

from structlog.typing import FilteringBoundLogger

from jobwire import db


async def every(
    interval_s: float, step: Callable[[], Awaitable[object]], *, what: str, log: FilteringBoundLogger
) -> None:
    """Run `step` every `interval_s` until cancelled. The interval is jittered by ±20 %: every
    process runs the same loops, and they spread out instead of arriving together. A step that finds
    the database unreachable is skipped with a warning, any other failure is logged with its
    traceback, and the loop goes on either way (`what` names the step in those lines)."""
    while True:
        await asyncio.sleep(interval_s * random.uniform(0.8, 1.2))
        try:
            await step()
        except db.UNAVAILABLE as exc:
            log.warning(f"{what} skipped", error=str(exc))
        except Exception:
            log.exception(f"{what} failed")
