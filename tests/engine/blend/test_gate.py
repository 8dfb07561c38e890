"""The per-model correctness gate: a default mode that misses it is raised or replaced by full."""

from __future__ import annotations

from engine.blend.gate import GateReport, run_gate
from engine.blend.options import BlendOptions, GateConfig
from engine.torch_engine import TorchEngine


def _gate(engine: TorchEngine, cfg: GateConfig, default: BlendOptions | None = None) -> GateReport:
    return run_gate(
        engine.model, engine.prompts, engine.chunk_cache, engine.eos_ids, default or BlendOptions(), cfg
    )


def test_gate_keeps_a_default_that_passes(engine: TorchEngine) -> None:
    report = _gate(engine, GateConfig(max_drop=10.0, prompts=1, answer_tokens=4))
    assert report.passed and report.chosen == BlendOptions()
    assert len(report.checked) == 1 and report.seconds > 0


def test_gate_raises_the_ratio_when_the_default_misses(engine: TorchEngine) -> None:
    # r = 1.0 recomputes every moved token: exact in float32, so it passes a near-zero bar
    cfg = GateConfig(max_drop=1e-3, fallback_ratios=(1.0,), prompts=1, answer_tokens=4)
    report = _gate(engine, cfg)
    assert report.checked[0]["ratio"] == 0.15 and float(report.checked[0]["drop"]) > 1e-3
    assert not report.passed and report.chosen.mode == "probe" and report.chosen.ratio == 1.0
    assert "raised" in report.reason


def test_gate_falls_back_to_full_when_every_ratio_misses(engine: TorchEngine) -> None:
    report = _gate(engine, GateConfig(max_drop=-1.0, fallback_ratios=(0.3,), prompts=1, answer_tokens=4))
    assert not report.passed and report.chosen.mode == "full"
    assert [c["ratio"] for c in report.checked] == [0.15, 0.3]
    assert "falls back to full" in report.reason and report.as_dict()["mode"] == "full"


def test_gate_off_takes_the_default_as_is(engine: TorchEngine) -> None:
    report = _gate(engine, GateConfig(enabled=False))
    assert report.passed and report.chosen == BlendOptions() and "disabled" in report.reason
