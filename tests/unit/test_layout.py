"""The house's rules, held by reading every module's imports: `service/` (the api) and `workers/`
(the worker and dispatcher processes) stand side by side on `jobwire/` and never import each other;
`jobwire/` imports neither, except the `jobwire` command (`jobwire/cli/`), which starts them; and no
route module imports another."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (a function-level import counts too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("service", ("workers",)), ("workers", ("service",)), ("jobwire", ("service", "workers"))],
)
def test_the_parts_stand_side_by_side(package: str, forbidden: tuple[str, ...]) -> None:
    checked = 0
    for path in modules(package):
        if path.is_relative_to(ROOT / "jobwire" / "cli"):
            continue  # the command starts the api and the workers: it imports them, lazily
        bad = {m for m in imports_of(path) if m.split(".")[0] in forbidden}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
        checked += 1
    assert checked > 5


# the modules that own routes: they declare a route table
ROUTE_MODULES = {
    path.stem
    for path in (ROOT / "service").glob("*.py")
    if "routes = web.RouteTableDef()" in path.read_text()
}


def test_route_modules_do_not_import_each_other() -> None:
    assert {"jobs", "sse", "ws", "webhooks"} <= ROUTE_MODULES
    for name in ROUTE_MODULES:
        imported = imports_of(ROOT / "service" / f"{name}.py")
        others = {f"service.{o}" for o in ROUTE_MODULES - {name}}
        assert not imported & others, f"service/{name}.py imports {sorted(imported & others)}"


def test_the_openapi_builder_depends_on_schemas_not_on_routes() -> None:
    imported = imports_of(ROOT / "service" / "openapi.py")
    assert not imported & {f"service.{o}" for o in ROUTE_MODULES}


def test_the_job_type_sdk_is_public() -> None:
    import jobwire

    for name in ("job_type", "JobContext", "PermanentError", "Backoff"):
        assert name in jobwire.__all__ and getattr(jobwire, name).__module__.startswith("jobwire.")
    assert (ROOT / "jobwire" / "py.typed").exists()
