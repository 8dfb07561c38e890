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
     ({"full_layer_share": -0.1}, "full_layer_share"), ({"pair_s": -1e-9}, "pair_s"),
     ({"query_tokens": -1}, "query_tokens")],
)  # fmt: skip
def test_bad_cost_settings_are_rejected(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        CostModel(**kwargs)  # type: ignore[arg-type]


def test_negative_token_count_is_rejected() -> None:
    with pytest.raises(ValueError, match="n_tokens"):
        Candidate("x", "x", -1)


def test_attention_makes_a_chunk_dearer_the_later_it_comes() -> None:
    """ms = rows / speed + pair x (rows x (context before + half the chunk) + query rows x chunk)."""
    model = CostModel(mode="reuse", tokens_per_s=1000.0, pair_s=1e-6, prefix_tokens=50, query_tokens=20)
    costs = model.costs([COLD, WARM, Candidate("short", "c", 100)], "ms")
    alone = 200 + 1e-3 * (200 * (50 + 100) + 20 * 200)
    assert costs.of((0,)) == pytest.approx(alone)
    assert costs.of((1, 0)) == pytest.approx(1e-3 * 20 * 200 + 200 + 1e-3 * (200 * (250 + 100) + 20 * 200))
    # the same tokens in another order: a cold chunk after a warm one attends to it
    assert costs.of((1, 0)) > costs.of((0, 1))
    assert costs.extend(costs.of((0,)), (0,), 2) == pytest.approx(costs.of((0, 2)))
    # a budget in tokens counts tokens, attention or not
    assert model.costs([COLD, WARM], "tokens").of((1, 0)) == pytest.approx(200)


def test_prefill_speed_fit_recovers_the_time_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine import prefill_speed as speed

    class Model:
        class rope:
            max_positions = 8192

    def timed(per_token_s: float, pair_s: float) -> object:
        return lambda model, n, rounds: n / (n * per_token_s + pair_s * n * n / 2)

    monkeypatch.setattr(speed, "measure_prefill_tokens_per_s", timed(1 / 800, 4e-7))
    fit = speed.measure_prefill_speed(Model(), 256, 1024)  # type: ignore[arg-type]
    assert fit.tokens_per_s == pytest.approx(800) and fit.pair_s == pytest.approx(4e-7)
    # noise that makes longer prompts look faster per token: no attention term, the long figure
    monkeypatch.setattr(speed, "measure_prefill_tokens_per_s", lambda model, n, rounds: 500.0 + n)
    fit = speed.measure_prefill_speed(Model(), 256, 1024)  # type: ignore[arg-type]
    assert fit.pair_s == 0.0 and fit.tokens_per_s == pytest.approx(1524.0)
