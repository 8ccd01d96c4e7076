"""The README's five-minute tour, run as written (bash and curl) against a real api and worker: each
step acts on a job in the state it needs, and the only problem document is the one the tour shows."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess

import pytest

from jobwire.config import Settings
from tests.conftest import ROOT, Api
from workers.worker import WorkerService

JOBWIRE_BIN = ROOT / ".venv" / "bin" / "jobwire"


def tour_script() -> str:
    readme = (ROOT / "README.md").read_text()
    tour = readme[readme.index("## A five-minute tour") :]
    match = re.search(r"```sh\n(.*?)```", tour, re.DOTALL)
    assert match, "the tour's shell block"
    return match.group(1)


@pytest.mark.slow
async def test_the_readme_tour_runs_as_written(api: Api, settings: Settings, worker: WorkerService) -> None:
    if shutil.which("curl") is None or shutil.which("bash") is None:
        pytest.skip("the tour needs bash and curl (apt-get install curl)")
    if not JOBWIRE_BIN.exists():
        pytest.skip("the tour runs .venv/bin/jobwire: run scripts/setup.sh")
    # the tour talks to localhost:8000; this api listens on a port of its own
    script = tour_script().replace("localhost:8000", api.url.removeprefix("http://"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBWIRE_")}
    env.update(
        JOBWIRE_DATABASE_URL=settings.database_url,
        JOBWIRE_NAMESPACE=settings.namespace,
        JOBWIRE_URL=api.url,
        TTY_COMPATIBLE="0",
    )
    out = await asyncio.to_thread(
        subprocess.run,
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "HTTP/1.1 202 Accepted" in text and "Location: " in text
    assert "event: completed" in text  # followed to its end
    assert '"status":"failed"' in text and '"message":"boom"' in text
    # retried and cancelled jobs in the state those steps need: the tour's only problem is its last
    # step's 422
    problems = re.findall(r'"type":"urn:jobwire:problem:([a-z-]+)"', text)
    assert problems == ["validation"], text
    assert '"slept":3.0' in text or '"slept": 3.0' in text  # the CLI's job
