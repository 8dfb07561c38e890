"""Per-request blending options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

BlendMode = Literal["full", "prefix", "reuse", "cacheblend", "cachecraft", "probe"]
BLEND_MODES: tuple[BlendMode, ...] = ("full", "prefix", "reuse", "cacheblend", "cachecraft", "probe")
# probe: on 6 MuSiQue development prompts (6 passages) at r = 0.15 it lost 0.119 nats/token of the full
# prefill's answer against 0.193 for cachecraft and 0.217 for plain reuse, with a first-token KL of 0.064
# against 0.098 (bench/results/blend_ablation_6p.md); the probe costs about 3% of a full prefill.
# See docs/blend_quality.md for the 12-example tables.
DEFAULT_MODE: BlendMode = "probe"
DEFAULT_RATIO = 0.15
# probe's attention temperature on reused rows: on 12 held-out MuSiQue development prompts (6 passages,
# r = 0.15) T = 1.1 lowered the teacher-forced drop from 0.037 to 0.026 nats/token and the first-token
# KL from 0.061 to 0.044; on 6 others 0.119 -> 0.100; T < 1 (APE's sharpening) made it worse
# (bench/results/blend_ablation_temperature_*). Other modes keep 1 unless a request sets it.
PROBE_TEMPERATURE = 1.1


@dataclass(frozen=True)
class BlendOptions:
    """How a request reuses chunk caches.

    - full: no reuse, one causal prefill.
    - prefix: reuse only pieces whose cache was computed after exactly the same tokens (as vLLM's
      prefix caching does); everything after the first miss is prefilled.
    - reuse: every cached chunk is reused as is (ratio 0); only uncached pieces and the query are computed.
    - cacheblend: layers before and at `check_layer` run on all tokens; the `ratio` share of cached
      tokens whose K/V deviate most there is recomputed through the remaining layers.
    - cachecraft: `ratio` of the moved cached tokens is recomputed, split into per-chunk budgets by
      the Cache-Craft statistics stored with each chunk (context impact, prefix overlap, order
      penalty) and chosen by each token's recorded attention on context; no check layer. A chunk
      whose cached context equals its current one is reused with no recompute.
    - probe: the question's rows first run through every layer against the placed caches
      (engine/blend/probe.py) and score each cached token by the attention it receives times its
      value norm; each moved chunk's first `sink_tokens` tokens plus the best-scoring tokens (widened
      to `widen` neighbours, per-chunk budgets by relevance^`budget_gamma`) are recomputed, with
      layers below `full_layers` on every row. `ratio` is the ceiling; with `error_target` > 0 the
      share stops, from `min_ratio` up, once the unselected score mass is at most that target.
      Selection refinements (each 0 = off): `probe_from` counts only layers from that one on in the
      probe's score; `craft_weight` w multiplies each score by (token_inter / its mean)^w, the
      Cache-Craft statistic of how much the token leaned on its old context (free: stored with the
      chunk); `deviation_weight` w multiplies it by (K/V deviation at the check layer
      `full_layers - 1` / its mean)^w (CacheBlend's signal; needs `full_layers` >= 2, since layer-0
      K/V are context-free and never deviate).
      `reuse_temperature` T (None: PROBE_TEMPERATURE for probe, 1 = off for the others; cacheblend
      takes only 1) divides the attention logits on the rows of moved chunks that are not recomputed
      by T, for every later query (APE's temperature on parallel-encoded context): their keys are
      placed scaled by 1/T, and recomputed rows get fresh keys. `temperature_slope` g varies T by
      where a moved chunk sits: T + g x (m - 1/2), m in [0, 1) the share of the documents' tokens
      that come before the chunk (all of them missing from its cached context), so with g > 0 a
      chunk that lost more context is flattened more; 0 = one T for every chunk.
    """

    mode: BlendMode = DEFAULT_MODE
    ratio: float = DEFAULT_RATIO
    check_layer: int = 1
    sink_tokens: int = 4
    widen: int = 1
    budget_gamma: float = 1.0
    full_layers: int = 1
    error_target: float = 0.0
    min_ratio: float = 0.0
    probe_from: int = 0
    craft_weight: float = 0.0
    deviation_weight: float = 0.0
    reuse_temperature: float | None = None
    temperature_slope: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in BLEND_MODES:
            raise ValueError(f"unknown blend mode {self.mode!r}; choose one of {BLEND_MODES}")
        if not 0.0 <= self.ratio <= 1.0:
            raise ValueError("blend ratio must be within [0, 1]")
        if self.check_layer < 0:
            raise ValueError("check_layer must be >= 0")
        if self.sink_tokens < 0 or self.widen < 0 or self.full_layers < 0:
            raise ValueError("sink_tokens, widen and full_layers must be >= 0")
        if not 0.0 <= self.error_target <= 1.0 or not 0.0 <= self.min_ratio <= 1.0:
            raise ValueError("error_target and min_ratio must be within [0, 1]")
        if self.probe_from < 0 or self.craft_weight < 0 or self.deviation_weight < 0:
            raise ValueError("probe_from, craft_weight and deviation_weight must be >= 0")
        if not 0.25 <= self.temperature <= 4.0:
            raise ValueError("reuse_temperature must be within [0.25, 4]")
        ends = (self.chunk_temperature(0.0), self.chunk_temperature(1.0))
        if min(ends) < 0.25 or max(ends) > 4.0:
            raise ValueError("temperature_slope takes the reuse temperature outside [0.25, 4]")
        if (self.temperature != 1.0 or self.temperature_slope != 0.0) and self.mode == "cacheblend":
            raise ValueError("cacheblend ranks by K/V deviation from the cache: reuse_temperature must be 1")
        if self.deviation_weight > 0 and self.full_layers < 2:
            raise ValueError("deviation_weight needs full_layers >= 2 (layer-0 K/V never deviate)")

    @property
    def temperature(self) -> float:
        """The reuse temperature in effect: the one set, else the mode's default."""
        if self.reuse_temperature is not None:
            return self.reuse_temperature
        return PROBE_TEMPERATURE if self.mode == "probe" else 1.0

    def chunk_temperature(self, share_before: float) -> float:
        """The temperature of a moved chunk with `share_before` of the documents' tokens before it."""
        return self.temperature + self.temperature_slope * (share_before - 0.5)

    @property
    def reuses(self) -> bool:
        return self.mode != "full"


@dataclass(frozen=True)
class GateConfig:
    """The per-model correctness gate run at load (engine/blend/gate.py)."""

    enabled: bool = True
    max_drop: float = 0.03  # nats per token of the full prefill's answer, mean over the prompts
    fallback_ratios: tuple[float, ...] = (0.3, 0.5)
    answer_tokens: int = 12
    prompts: int = 3  # how many of the shipped prompts (start-up cost grows with it)
