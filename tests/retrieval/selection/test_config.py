"""Selection settings: defaults, the 'lambda' name, and rejections that name the field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from retrieval.selection.config import MAX_ITERATIONS, SelectionConfig


def test_defaults_suit_the_embedded_model() -> None:
    cfg = SelectionConfig()
    assert cfg.method == "corag" and cfg.budget_unit == "tokens"
    assert 6 * 150 <= cfg.budget <= 10 * 150 + 100  # 6-10 passages of ~150 tokens
    assert cfg.c == 2.0 and cfg.lambda_ == 0.1 and cfg.iterations <= MAX_ITERATIONS


def test_lambda_is_accepted_under_its_request_name() -> None:
    assert SelectionConfig.model_validate({"lambda": 0.4}).lambda_ == 0.4
    assert SelectionConfig(lambda_=0.3).lambda_ == 0.3


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"budget": -5}, "budget"),
        ({"budget": 0}, "budget"),
        ({"budget": 5e7}, "budget"),
        ({"iterations": MAX_ITERATIONS + 1}, "iterations"),
        ({"iterations": 0}, "iterations"),
        ({"c": -1.0}, "c"),
        ({"lambda": -0.1}, "lambda"),
        ({"seed": -1}, "seed"),
        ({"time_cap_ms": 0}, "time_cap_ms"),
        ({"method": "greedy"}, "method"),
        ({"budget_unit": "seconds"}, "budget_unit"),
        ({"iters": 3}, "iters"),
    ],
)
def test_bad_values_are_rejected_naming_the_field(fields: dict[str, object], named: str) -> None:
    with pytest.raises(ValidationError) as err:
        SelectionConfig.model_validate(fields)
    errors = err.value.errors()
    assert any(named in (str(p) for p in e["loc"]) or named in e["msg"] for e in errors), errors


def test_config_is_frozen() -> None:
    cfg = SelectionConfig()
    with pytest.raises(ValidationError):
        cfg.budget = 10  # type: ignore[misc]
