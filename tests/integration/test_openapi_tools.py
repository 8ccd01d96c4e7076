"""The OpenAPI document as code generators and linters see it: Redocly's recommended rules pass with
no error, and openapi-typescript generates types from it that compile, with each job type's params
selected by `type` and the webhook payloads typed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from jobwire.registry import load_job_types
from service import openapi
from service.app import create_app
from tests import npm
from tests.conftest import ROOT, TEST_JOB_MODULES, make_settings

MANIFEST = ROOT / "tests" / "tools" / "openapi"


@pytest.fixture(scope="module")
def bin_dir() -> Path:
    return npm.tools("openapi", MANIFEST)


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> Path:
    registry = load_job_types(TEST_JOB_MODULES)
    app = create_app(make_settings("postgresql://unused/unused", "unused"), registry)
    doc = openapi.build(registry, app.router.routes(), "https://jobs.example.com")
    path = tmp_path_factory.mktemp("openapi") / "openapi.json"
    path.write_text(json.dumps(doc))
    return path


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_redocly_recommended_rules_find_no_error(bin_dir: Path, document: Path) -> None:
    done = run(
        [str(bin_dir / "redocly"), "lint", "--extends", "recommended", "--format", "json", str(document)],
        document.parent,
    )
    report: dict[str, Any] = json.loads(done.stdout)
    errors = [p for p in report["problems"] if p["severity"] == "error"]
    assert not errors, json.dumps(errors, indent=1)[:4000]
    assert report["totals"]["errors"] == 0


# what a TypeScript user of the generated types writes; the @ts-expect-error lines must fail to
# compile (tsc reports an unused one), so the test also fails if the types grow too loose
USE_TS = """
import type { components, paths, webhooks } from "./jobwire";

type Submit = components["schemas"]["SubmitJob"];
export const sleep: Submit = { type: "demo.sleep", params: { seconds: 1 }, delay_s: 5 };
export const report: Submit = {
  type: "report.generate",
  params: { start_date: "2026-11-01", end_date: "2026-11-30" },
};
// @ts-expect-error: demo.sleep takes no start_date (the params follow the type)
export const wrong: Submit = { type: "demo.sleep", params: { start_date: "2026-11-01" } };
// @ts-expect-error: no such job type
export const unknown: Submit = { type: "demo.nothing", params: {} };

type Job = paths["/v1/jobs/{job_id}"]["get"]["responses"]["200"]["content"]["application/json"];
export const status = (job: Job): string => job.status;
type TooMany = paths["/v1/jobs"]["post"]["responses"]["429"]["content"]["application/problem+json"];
export const detail = (problem: TooMany): string => problem.detail;
type Events = paths["/v1/jobs/{job_id}/events"]["get"]["parameters"]["query"];
export const token: Events = { token: "t" };

type Completed = webhooks["job.completed"]["post"]["requestBody"]["content"]["application/json"];
export const result = (hook: Completed): unknown => hook.data.result;
type Signed = webhooks["job.failed"]["post"]["parameters"]["header"];
export const signature = (headers: Signed): string => headers["webhook-signature"];
"""


def test_openapi_typescript_generates_types_that_compile(bin_dir: Path, document: Path) -> None:
    out = document.parent
    generated = run(
        [
            str(bin_dir / "openapi-typescript"),
            str(document),
            # fields with a default are optional in a request (a default does not make them required)
            "--default-non-nullable",
            "false",
            "-o",
            str(out / "jobwire.d.ts"),
        ],
        out,
    )
    assert generated.returncode == 0, generated.stderr
    (out / "use.ts").write_text(USE_TS)
    compiled = run(
        [
            str(bin_dir / "tsc"),
            "--noEmit",
            "--strict",
            "--target",
            "es2022",
            "--module",
            "es2022",
            "--moduleResolution",
            "bundler",
            "jobwire.d.ts",
            "use.ts",
        ],
        out,
    )
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
