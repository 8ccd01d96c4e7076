"""jobwire.logs: the lines jobwire writes, as a log collector reads them."""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime

import orjson
import pytest
import structlog

from jobwire.logs import add_timestamp, configure, get_logger, level_number

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


pytestmark = pytest.mark.usefixtures("restore_logging")


def lines(err: str) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in err.splitlines() if line.strip()]


def test_json_lines_carry_level_logger_time_and_bound_context(capfd: pytest.CaptureFixture[str]) -> None:
    configure("json", "info")
    log = get_logger("jobwire.test")
    structlog.contextvars.bind_contextvars(job_id="j1", tenant="acme")
    before = datetime.now(UTC)
    log.info("job failed", error="boom")
    log.debug("job started")  # below the level: not written
    log.warning("lease lost", attempt=2)
    [failed, lost] = lines(capfd.readouterr().err)
    assert failed["event"] == "job failed" and failed["error"] == "boom"
    assert failed["level"] == "info" and failed["logger"] == "jobwire.test"
    assert failed["job_id"] == "j1" and failed["tenant"] == "acme"
    stamp = str(failed["timestamp"])
    assert ISO.match(stamp), stamp
    written = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert abs((written - before).total_seconds()) < 5
    assert lost["level"] == "warning" and lost["attempt"] == 2


def test_debug_level_writes_the_per_job_lines(capfd: pytest.CaptureFixture[str]) -> None:
    configure("json", "debug")
    get_logger("jobwire.runtime").debug("job started", max_attempts=3)
    [started] = lines(capfd.readouterr().err)
    assert started["event"] == "job started" and started["level"] == "debug"


def test_exceptions_are_rendered_into_the_line(capfd: pytest.CaptureFixture[str]) -> None:
    configure("json", "info")
    try:
        raise RuntimeError("the disk is full")
    except RuntimeError:
        get_logger("jobwire.test").exception("write failed")
    [line] = lines(capfd.readouterr().err)
    assert line["level"] == "error"
    assert "RuntimeError: the disk is full" in str(line["exception"])


def test_other_libraries_lines_are_rendered_alike(capfd: pytest.CaptureFixture[str]) -> None:
    configure("json", "info")
    logging.getLogger("aiohttp.server").error("Error handling request")
    logging.getLogger("arq.worker").info("job started")  # arq's own per-job lines stay off
    [line] = lines(capfd.readouterr().err)
    assert line["event"] == "Error handling request"
    assert line["level"] == "error" and line["logger"] == "aiohttp.server"
    assert ISO.match(str(line["timestamp"]))


def test_console_format_is_readable_text(capfd: pytest.CaptureFixture[str]) -> None:
    configure("console", "info")
    get_logger("jobwire.cli").info("api ready", namespace="jobwire")
    err = capfd.readouterr().err
    assert "api ready" in err and "namespace=jobwire" in err and "jobwire.cli" in err


def test_unknown_level_is_refused() -> None:
    assert level_number("Warning") == logging.WARNING
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        configure("json", "loud")


def test_timestamp_follows_the_clock_across_seconds() -> None:
    first = str(add_timestamp(None, "info", {})["timestamp"])
    time.sleep(1.01)
    second = str(add_timestamp(None, "info", {})["timestamp"])
    assert ISO.match(first) and ISO.match(second)
    assert first[:19] != second[:19]  # the cached date and time moved on
    assert abs(datetime.fromisoformat(second.replace("Z", "+00:00")) - datetime.now(UTC)).total_seconds() < 1
