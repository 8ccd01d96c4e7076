"""`report.generate`: a report of the tenant's job history over a date range."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from jobwire.context import JobContext
from jobwire.registry import job_type

MAX_DAYS = 366


class ReportParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start_date: date = Field(description="first day of the report (UTC), inclusive")
    end_date: date = Field(description="last day of the report (UTC), inclusive")

    @model_validator(mode="after")
    def _range(self) -> ReportParams:
        if self.end_date < self.start_date:
            raise ValueError("end_date must not be before start_date")
        if (self.end_date - self.start_date).days + 1 > MAX_DAYS:
            raise ValueError(f"a report covers at most {MAX_DAYS} days")
        return self


_BY_TYPE = """
SELECT type,
       count(*)                                            AS jobs,
       count(*) FILTER (WHERE status = 'completed')        AS completed,
       count(*) FILTER (WHERE status = 'failed')           AS failed,
       count(*) FILTER (WHERE status = 'cancelled')        AS cancelled,
       count(*) FILTER (WHERE status IN ('pending', 'running')) AS unfinished,
       avg(attempts)::float8                               AS avg_attempts,
       avg(extract(epoch FROM finished_at - started_at)) FILTER (WHERE status = 'completed')::float8
                                                           AS avg_duration_s,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at))
           FILTER (WHERE status = 'completed')             AS p50_duration_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at))
           FILTER (WHERE status = 'completed')             AS p95_duration_s
FROM jobs
WHERE tenant = $1 AND created_at >= $2 AND created_at < $3
GROUP BY type ORDER BY jobs DESC, type
"""

_BY_DAY = """
SELECT (created_at AT TIME ZONE 'UTC')::date AS day,
       count(*)                                     AS jobs,
       count(*) FILTER (WHERE status = 'completed') AS completed,
       count(*) FILTER (WHERE status = 'failed')    AS failed
FROM jobs
WHERE tenant = $1 AND created_at >= $2 AND created_at < $3
GROUP BY day ORDER BY day
"""

_TOP_ERRORS = """
SELECT error->>'type' AS type, count(*) AS jobs
FROM jobs
WHERE tenant = $1 AND created_at >= $2 AND created_at < $3 AND status = 'failed'
GROUP BY 1 ORDER BY jobs DESC, type LIMIT 10
"""


def _rate(completed: int, failed: int) -> float | None:
    return round(completed / (completed + failed), 4) if completed + failed else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


@job_type("report.generate", timeout=300, max_attempts=3)
async def generate(ctx: JobContext, params: ReportParams) -> dict[str, Any]:
    """Counts, success rates and durations of the tenant's jobs per type and per day."""
    start = datetime.combine(params.start_date, time.min, tzinfo=UTC)
    end = datetime.combine(params.end_date + timedelta(days=1), time.min, tzinfo=UTC)
    args = (ctx.tenant, start, end)

    ctx.progress(5, "counting jobs by type")
    by_type_rows = await ctx.db.fetch(_BY_TYPE, *args)
    ctx.progress(40, "counting jobs by day")
    by_day_rows = await ctx.db.fetch(_BY_DAY, *args)
    ctx.progress(70, "collecting errors")
    error_rows = await ctx.db.fetch(_TOP_ERRORS, *args)

    by_type = [
        {
            "type": r["type"],
            "jobs": r["jobs"],
            "completed": r["completed"],
            "failed": r["failed"],
            "cancelled": r["cancelled"],
            "unfinished": r["unfinished"],
            "success_rate": _rate(r["completed"], r["failed"]),
            "avg_attempts": _round(r["avg_attempts"]),
            "avg_duration_s": _round(r["avg_duration_s"]),
            "p50_duration_s": _round(r["p50_duration_s"]),
            "p95_duration_s": _round(r["p95_duration_s"]),
        }
        for r in by_type_rows
    ]
    totals = {
        key: sum(t[key] for t in by_type)
        for key in ("jobs", "completed", "failed", "cancelled", "unfinished")
    }
    ctx.progress(95, "assembling the report")
    return {
        "tenant": ctx.tenant,
        "start_date": params.start_date.isoformat(),
        "end_date": params.end_date.isoformat(),
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "totals": {**totals, "success_rate": _rate(totals["completed"], totals["failed"])},
        "by_type": by_type,
        "by_day": [
            {
                "date": r["day"].isoformat(),
                "jobs": r["jobs"],
                "completed": r["completed"],
                "failed": r["failed"],
            }
            for r in by_day_rows
        ],
        "top_errors": [{"type": r["type"], "jobs": r["jobs"]} for r in error_rows],
    }
