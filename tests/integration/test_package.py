"""The `jobwire` package as users meet it: what `pip install` puts on their path, and a job type
written in another project, importing only from `jobwire`, run by real api and worker processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from jobwire.config import Settings
from tests.conftest import eventually, free_port, http_ready, new_key

ROOT = Path(__file__).resolve().parents[2]

OUTSIDE_JOBS = '''
"""A job module of another project: it knows jobwire only by its public names."""

from pydantic import BaseModel

from jobwire import Backoff, JobContext, PermanentError, job_type


class Double(BaseModel):
    n: int


@job_type("outside.double", timeout=10, max_attempts=2, backoff=Backoff(base_s=0.1))
async def double(ctx: JobContext, params: Double) -> dict[str, int]:
    """Doubles n; refuses a negative one for good."""
    if params.n < 0:
        raise PermanentError("n must not be negative")
    ctx.progress(50, "halfway")
    return {"doubled": params.n * 2, "attempt": ctx.attempt}
'''


def test_the_wheel_installs_jobwire_service_and_workers_and_nothing_generic(tmp_path: Path) -> None:
    # a real build (isolated, as pip does for users), into a folder of the test's own
    wheel_cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)]
    subprocess.run(wheel_cmd, check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("jobwire-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_level == {"jobwire", "service", "workers"}
    assert "jobwire/py.typed" in names
    assert "service/dashboard/index.html" in names and "service/dashboard/js/main.js" in names
    assert "workers/jobs/demo.py" in names


def test_python_m_jobwire_and_the_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "jobwire", "--version"], capture_output=True, text=True, check=True, cwd=ROOT
    )
    import jobwire

    assert out.stdout.strip() == f"jobwire {jobwire.__version__}" and jobwire.__version__ != "0+unknown"
    assert set(jobwire.__all__) >= {"job_type", "JobContext", "PermanentError", "Backoff"}


@pytest.fixture
def outside_project(tmp_path: Path) -> Path:
    project = tmp_path / "elsewhere"
    project.mkdir()
    (project / "outside_jobs.py").write_text(textwrap.dedent(OUTSIDE_JOBS))
    return project


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait(10)


@pytest.mark.slow
async def test_a_job_type_from_another_project_runs_on_real_processes(
    settings: Settings, outside_project: Path, processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        # the other project's folder, as its own deployment would have it; the repo is not the cwd
        "PYTHONPATH": str(outside_project),
        "JOBWIRE_DATABASE_URL": settings.database_url,
        "JOBWIRE_REDIS_URL": settings.redis_url,
        "JOBWIRE_NAMESPACE": settings.namespace,
        "JOBWIRE_SECRET_KEY": "test-secret-key-of-32-characters-or-more",
        "JOBWIRE_JOB_MODULES": '["outside_jobs"]',
        "JOBWIRE_WORKER_POLL_DELAY_S": "0.05",
        "JOBWIRE_LOG_FORMAT": "json",
    }
    for args in (["api", "--port", str(port)], ["worker", "--concurrency", "2"]):
        log = (tmp_path / f"{args[0]}.log").open("wb")
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "jobwire", *args], cwd=outside_project, env=env, stdout=log, stderr=log
            )
        )
    url = f"http://127.0.0.1:{port}"
    await http_ready(url)
    key = await new_key(settings.database_url, "acme")
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client:
        # the api validates with the other project's model
        bad = await client.post("/v1/jobs", json={"type": "outside.double", "params": {"n": "x"}})
        assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["body", "params", "n"]
        ok = (await client.post("/v1/jobs", json={"type": "outside.double", "params": {"n": 21}})).json()
        refused = (await client.post("/v1/jobs", json={"type": "outside.double", "params": {"n": -1}})).json()

        async def finished(job_id: str, status: str) -> bool:
            return bool((await client.get(f"/v1/jobs/{job_id}")).json()["status"] == status)

        await eventually(
            lambda: finished(ok["id"], "completed"), timeout=30, what="the outside job to complete"
        )
        await eventually(lambda: finished(refused["id"], "failed"), timeout=30, what="the refusal to fail")
        done = (await client.get(f"/v1/jobs/{ok['id']}")).json()
        assert done["result"] == {"doubled": 42, "attempt": 1} and done["progress"] == 100
        failed = (await client.get(f"/v1/jobs/{refused['id']}")).json()
        assert failed["attempts"] == 1 and failed["error"]["message"] == "n must not be negative"
