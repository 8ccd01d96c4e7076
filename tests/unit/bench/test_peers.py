"""bench.peers' table and verdicts, from measurements made up here (the benchmark itself runs only
by hand: it installs the peers)."""

from __future__ import annotations

from bench.peers import SYSTEMS_RUN, Measure, headline, ratios, render


def measures() -> list[Measure]:
    out: list[Measure] = []
    for round_no, scale in ((1, 1.0), (2, 1.2), (3, 0.5)):  # the third round on a busy machine
        for system, drain, http, p50 in (
            ("jobwire", 2000, 3000, 12.0),
            ("bullmq", 8000, 8000, 1.0),
            ("celery-threads", 500, 0, 2.0),
        ):
            out.append(Measure(system, "drain", round_no, drain * scale))
            if http:
                out.append(Measure(system, "http", round_no, http * scale, p99_ms=20.0))
            out.append(Measure(system, "latency", round_no, p50 * scale, p99_ms=p50 * 2 * scale))
    return out


def test_ratios_are_medians_over_the_rounds() -> None:
    r = ratios(measures())
    assert r["drain"] == 2000 / 8000
    assert r["http"] == 3000 / 8000


def test_headline_judges_jobwire_against_bullmq() -> None:
    drain, http = headline(measures())
    assert drain.jobwire.startswith("2,000 jobs/s") and drain.baseline == "BullMQ: 8,000 jobs/s"
    assert drain.ratio == "0.25x" and drain.met is False
    assert http.ratio == "0.38x" and http.met is False
    fast = [
        Measure("jobwire", m.figure, m.round, m.value * 4) if m.system == "jobwire" else m for m in measures()
    ]
    assert all(f.met for f in headline(fast))


def test_headline_without_bullmq_is_not_judged() -> None:
    only_jobwire = [m for m in measures() if m.system == "jobwire"]
    assert [f.met for f in headline(only_jobwire)] == [None, None]


def test_table_has_a_column_per_system_and_says_what_each_stores() -> None:
    systems = tuple(s for s in SYSTEMS_RUN if s.key in ("jobwire", "celery-threads", "bullmq"))
    table = render("Peers", measures(), systems)
    lines = table.splitlines()
    assert lines[2] == "| figure | jobwire | Celery 5 (threads) | BullMQ (Node) |"
    drain = next(line for line in lines if line.startswith("| drain"))
    assert drain.endswith("| 2,000 | 500 | 8,000 |")
    submit = next(line for line in lines if line.startswith("| HTTP submission"))
    assert "(one FastAPI endpoint for both pools)" in submit  # Celery's pools share one server
    pickup = next(line for line in lines if line.startswith("| pickup"))
    assert pickup.endswith("| 12.0/24.0 | 2.0/4.0 | 1.0/2.0 |")
    durable = next(line for line in lines if line.startswith("| when the enqueue returns"))
    assert "committed in PostgreSQL" in durable and "in Redis" in durable
    assert all(line.count("|") == len(systems) + 2 for line in lines[2:] if line.startswith("|"))
