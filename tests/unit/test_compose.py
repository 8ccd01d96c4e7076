"""docker-compose.yml, read as compose reads it (there is no Docker daemon in the test run): the
PostgreSQL healthcheck goes over TCP, migrate retries its connection, every long-running service
restarts and has a healthcheck, one image is built once, and every jobwire command in the file is
one the `jobwire` command accepts."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from jobwire.cli.main import build_parser
from tests.conftest import ROOT

JOBWIRE_SERVICES = ("migrate", "api", "worker", "dispatcher")
LONG_RUNNING = ("postgres", "redis", "api", "worker", "dispatcher")


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    found: dict[str, Any] = compose["services"]
    return found


def test_postgres_is_healthy_only_once_it_answers_over_tcp(services: dict[str, Any]) -> None:
    test = services["postgres"]["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1] == "pg_isready"
    # the image's first-boot server listens on the Unix socket only: a check without -h passes then
    assert test[test.index("-h") + 1] == "127.0.0.1"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_migrate_retries_its_connection(services: dict[str, Any]) -> None:
    command = services["migrate"]["command"]
    args = build_parser().parse_args(command)
    assert args.command == "migrate" and args.wait >= 30


def test_one_image_built_once_and_shared(services: dict[str, Any]) -> None:
    built = [name for name, service in services.items() if "build" in service]
    assert built == ["migrate"]  # the first jobwire service to start
    images = {services[name]["image"] for name in JOBWIRE_SERVICES}
    assert len(images) == 1


def test_long_running_services_restart_and_the_rest_run_once(services: dict[str, Any]) -> None:
    for name in LONG_RUNNING:
        assert services[name]["restart"] == "unless-stopped", name
    assert services["migrate"]["restart"] == "no"


@pytest.mark.parametrize("name", ["worker", "dispatcher"])
def test_worker_and_dispatcher_healthchecks_ask_jobwire_health(services: dict[str, Any], name: str) -> None:
    test = services[name]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "jobwire"]
    args = build_parser().parse_args(test[2:])
    assert args.command == "health" and args.role == name


def test_every_jobwire_service_waits_for_its_stores_and_the_schema(services: dict[str, Any]) -> None:
    for name in ("api", "worker", "dispatcher"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        build_parser().parse_args(services[name]["command"])  # a command jobwire accepts
    assert services["migrate"]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_no_default_secret(services: dict[str, Any]) -> None:
    for name in JOBWIRE_SERVICES:
        secret = services[name]["environment"]["JOBWIRE_SECRET_KEY"]
        assert secret.startswith("${JOBWIRE_SECRET_KEY:?"), name
