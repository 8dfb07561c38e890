"""Summaries of one load level: latency percentiles, throughput, goodput under an SLO, errors,
and chunk-cache counters from the server's /metrics before and after."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench.load_client import RequestRecord

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class Slo:
    """A request counts towards goodput when it succeeded within both limits (milliseconds)."""

    ttft_ms: float
    itl_ms: float

    def met_by(self, rec: RequestRecord) -> bool:
        if not rec.ok or rec.ttft_ms is None or rec.ttft_ms > self.ttft_ms:
            return False
        return not rec.itl_ms or max(rec.itl_ms) <= self.itl_ms


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), NaN for no values."""
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def distribution(values: list[float]) -> dict[str, float]:
    out = {f"p{q}": percentile(values, q) for q in PERCENTILES}
    out["mean"] = sum(values) / len(values) if values else math.nan
    out["count"] = len(values)
    return out


def summarize(records: list[RequestRecord], wall_s: float, slo: Slo) -> dict[str, Any]:
    """Everything a report shows about one level, from its request records."""
    done = [r for r in records if r.ok]
    errors = Counter((r.error or "unknown").split(":")[0] for r in records if not r.ok)
    prompt = sum(r.prompt_tokens for r in done)
    output = sum(r.completion_tokens for r in done)
    cached = sum(r.cached_tokens for r in done)
    return {
        "sent": len(records),
        "completed": len(done),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "wall_s": wall_s,
        "request_throughput": len(done) / wall_s if wall_s > 0 else 0.0,
        "output_token_throughput": output / wall_s if wall_s > 0 else 0.0,
        "goodput": sum(slo.met_by(r) for r in records) / wall_s if wall_s > 0 else 0.0,
        "slo_attainment": sum(slo.met_by(r) for r in records) / len(records) if records else 0.0,
        "prompt_tokens": prompt,
        "completion_tokens": output,
        "cached_token_share": cached / prompt if prompt else 0.0,
        "recomputed_share_of_cached": sum(r.recomputed_tokens for r in done) / cached if cached else 0.0,
        "ttft_ms": distribution([r.ttft_ms for r in done if r.ttft_ms is not None]),
        "itl_ms": distribution([gap for r in done for gap in r.itl_ms]),
        "tpot_ms": distribution([t for r in done if (t := r.tpot_ms) is not None]),
        "e2e_ms": distribution([r.e2e_ms for r in done if r.e2e_ms is not None]),
    }


def kv_counters(metrics_text: str) -> dict[str, float]:
    """`ragblend_kv_{hits,misses,writes}_total` per tier, as "hits/memory" -> value."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            for kind in ("hits", "misses", "writes"):
                if sample.name == f"ragblend_kv_{kind}_total":
                    out[f"{kind}/{sample.labels.get('tier', '')}"] = sample.value
    return out


def kv_hit_rates(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Per tier, hits / (hits + misses) over the level, from counter deltas."""
    tiers = {key.split("/", 1)[1] for key in after if not key.startswith("writes/")}
    rates: dict[str, float] = {}
    for tier in sorted(tiers):
        hits = after.get(f"hits/{tier}", 0.0) - before.get(f"hits/{tier}", 0.0)
        misses = after.get(f"misses/{tier}", 0.0) - before.get(f"misses/{tier}", 0.0)
        if hits + misses > 0:
            rates[tier] = hits / (hits + misses)
    return rates


def without_nan(value: Any) -> Any:
    """The same structure with NaN (a percentile of nothing) as None, so the JSON is standard."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: without_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nan(v) for v in value]
    return value
