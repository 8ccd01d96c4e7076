"""The problem documents of service.problems."""

from __future__ import annotations

import orjson
from pydantic import BaseModel, ValidationError

from service import schemas
from service.problems import invalid, validation_problem


def test_invalid_is_a_422_validation_problem_for_one_value() -> None:
    problem = invalid(["query", "jobs"], "name the jobs to follow")
    body = orjson.loads(problem.response("/v1/events").body)  # type: ignore[arg-type]
    assert body == {
        "type": "urn:jobwire:problem:validation",
        "title": "Validation failed",
        "status": 422,
        "detail": "name the jobs to follow",
        "instance": "/v1/events",
        "errors": [{"loc": ["query", "jobs"], "msg": "name the jobs to follow", "type": "value_error"}],
    }
    schemas.Problem.model_validate(body)
    named = invalid(("query", "limit"), "limit must be 1-200", msg="out of range", type_="range")
    assert named.errors == [{"loc": ["query", "limit"], "msg": "out of range", "type": "range"}]


def test_one_value_and_a_model_give_the_same_kind_of_problem() -> None:
    class Body(BaseModel):
        n: int

    try:
        Body.model_validate({"n": "x"})
    except ValidationError as exc:
        from_model = validation_problem(exc)
    one = invalid(["body", "n"], "n must be a number")
    assert (from_model.status, from_model.slug, from_model.title) == (one.status, one.slug, one.title)
    assert from_model.errors is not None and from_model.errors[0]["loc"] == ["body", "n"]
