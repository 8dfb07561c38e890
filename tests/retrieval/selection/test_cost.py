"""Cost model: what a warm chunk costs in each blend mode, milliseconds, and bad settings."""

from __future__ import annotations

import pytest

from retrieval.selection.candidate import Candidate
from retrieval.selection.cost import CostModel

COLD = Candidate("cold", "a", 200)
WARM = Candidate("warm", "b", 200, warm=True)


@pytest.mark.parametrize(
    ("mode", "first", "later"),
    [("full", 200, 200), ("prefix", 0, 200), ("reuse", 0, 0), ("cacheblend", 30, 30), ("cachecraft", 30, 30)],
)
def test_warm_chunk_costs_its_recompute_share(mode: str, first: float, later: float) -> None:
    model = CostModel(mode=mode, ratio=0.15)  # type: ignore[arg-type]
    costs = model.costs([COLD, WARM])
    assert costs.first[0] == costs.later[0] == 200  # a cold chunk is always prefilled whole
    assert costs.first[1] == pytest.approx(first) and costs.later[1] == pytest.approx(later)
    # prefix mode: only the first document position can be an exact prefix-cache hit
    assert costs.of((1, 0)) == pytest.approx(first + 200)
    assert costs.of((0, 1)) == pytest.approx(200 + later)


def test_check_layers_add_their_share() -> None:
    model = CostModel(mode="cacheblend", ratio=0.15, full_layer_share=2 / 30)
    assert model.tokens(WARM, first=False) == pytest.approx(200 * (0.15 + 0.85 * 2 / 30))


def test_milliseconds_from_a_measured_speed() -> None:
    model = CostModel(mode="reuse", tokens_per_s=2000.0)
    assert model.costs([COLD], "ms").later[0] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="tokens_per_s"):
        CostModel().costs([COLD], "ms")


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [({"ratio": 1.5}, "ratio"), ({"mode": "lazy"}, "mode"), ({"tokens_per_s": 0.0}, "tokens_per_s"),
     ({"full_layer_share": -0.1}, "full_layer_share")],
)  # fmt: skip
def test_bad_cost_settings_are_rejected(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        CostModel(**kwargs)  # type: ignore[arg-type]


def test_negative_token_count_is_rejected() -> None:
    with pytest.raises(ValueError, match="n_tokens"):
        Candidate("x", "x", -1)
