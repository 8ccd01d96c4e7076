"""npm packages the tests run (the OpenAPI linter and generator, the JavaScript client's build),
installed with `npm ci` from a lockfile committed in the repository, once: an install is reused
until its package-lock.json changes. Debian's node and npm (scripts/test installs them)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

# outside the repository: a clean clone, and every worktree, shares the installs
CACHE = Path(os.environ.get("JOBWIRE_TOOLS_CACHE", Path.home() / ".cache" / "jobwire-tools"))
NPM_CI = ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"]


def require_node() -> None:
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node and npm are not installed (scripts/test installs them: apt-get install nodejs npm)")


def _stamp(directory: Path) -> str:
    return hashlib.sha256((directory / "package-lock.json").read_bytes()).hexdigest()


def ci(directory: Path, *, timeout: float = 300) -> None:
    """`npm ci` in `directory` unless its node_modules was installed from the same lockfile; one
    install at a time (two test processes may ask at once)."""
    require_node()
    stamp_file = directory / "node_modules" / ".jobwire-lock-sha256"
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp_file.exists() and stamp_file.read_text() == _stamp(directory):
            return
        done = subprocess.run(NPM_CI, cwd=directory, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"npm ci in {directory} failed:\n{done.stdout}\n{done.stderr}"
        stamp_file.write_text(_stamp(directory))


def tools(name: str, manifest_dir: Path) -> Path:
    """The npm packages of `manifest_dir` (package.json + package-lock.json), installed under CACHE;
    returns their node_modules/.bin."""
    target = CACHE / name
    target.mkdir(parents=True, exist_ok=True)
    for file in ("package.json", "package-lock.json"):
        if not (target / file).exists() or (target / file).read_bytes() != (manifest_dir / file).read_bytes():
            shutil.copyfile(manifest_dir / file, target / file)
    ci(target)
    return target / "node_modules" / ".bin"


def run(directory: Path, script: str, *, timeout: float = 120) -> None:
    """`npm run <script>` in `directory`."""
    done = subprocess.run(
        ["npm", "run", "--silent", script], cwd=directory, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"npm run {script} in {directory} failed:\n{done.stdout}\n{done.stderr}"
