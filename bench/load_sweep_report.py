"""The rate sweep's sustained rates, markdown table and latency-versus-rate plot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def sustained(levels: list[dict[str, Any]], modes: list[str]) -> dict[str, float]:
    """Per mode, the highest rate whose level held the SLO (0 when even the first broke it)."""
    out = {}
    for mode in modes:
        held = [lv["rate"] for lv in levels if lv["mode"] == mode and not lv["slo_broken"]]
        out[mode] = max(held, default=0.0)
    return out


def _ms(dist: dict[str, float]) -> str:
    vals = [dist.get(f"p{q}", math.nan) for q in (50, 90, 99)]
    return " / ".join("-" if math.isnan(v) else f"{v:.0f}" for v in vals)


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else ("inf" if a > 0 else "-")


def markdown(payload: dict[str, Any]) -> str:
    cfg = payload["config"]
    work = (
        f"SQuAD 2.0: {cfg['paragraphs'] or 'all'} paragraphs ingested as one collection, answerable "
        f"questions asked with top_k {cfg['top_k']}"
        if cfg["workload"] == "squad"
        else f"MuSiQue: {cfg['passages']} passages inline per question, shuffled"
    )
    lines = [
        "# Load test: request rate sustained under a latency SLO, per blend mode",
        "",
        f"Command: `{payload['command']}`",
        "",
        f"Target {payload['target']}; endpoint {cfg['endpoint']}. {work}; Zipf s={cfg['zipf']} over the "
        f"questions; max_tokens {cfg['max_tokens']}; Poisson arrivals for {cfg['level_seconds']:g} s a "
        f"level, rates from {cfg['start_rate']:g} req/s doubling. SLO: p99 TTFT <= {cfg['slo_ttft_ms']:g} "
        f"ms, inter-token gaps <= {cfg['slo_itl_ms']:g} ms for >= {cfg['attainment']:.0%} of requests, no "
        f"errors. Code {payload['git']}; machine {payload['machine']}.",
        "",
        "| mode | rate (req/s) | ok / sent | done req/s | TTFT p50 / p90 / p99 ms | ITL p50 / p90 / p99 ms "
        "| cached share | recomputed share of cached | SLO |",
        "| --- | ---: | --- | ---: | --- | --- | ---: | ---: | --- |",
    ]
    for lv in payload["levels"]:
        s = lv["summary"]
        lines.append(
            f"| {lv['mode']} | {lv['rate']:g} | {s['completed']} / {s['sent']} "
            f"| {s['request_throughput']:.2f} "
            f"| {_ms(s['ttft_ms'])} | {_ms(s['itl_ms'])} | {s['cached_token_share']:.0%} "
            f"| {s['recomputed_share_of_cached']:.0%} | {lv['slo_broken'] or 'held'} |"
        )
    rates = payload["sustained"]
    lines += ["", "| mode | sustained rate (req/s) |", "| --- | ---: |"]
    lines += [f"| {mode} | {rate:g} |" for mode, rate in rates.items()]
    blend = next((m for m in rates if m not in ("prefix", "full")), None)
    if blend is not None:
        lines += [
            "",
            f"{blend} sustains {_ratio(rates[blend], rates.get('full', 0.0))} the rate of full prefill "
            f"and {_ratio(rates[blend], rates.get('prefix', 0.0))} that of prefix reuse (rates double "
            "per level, so each figure is known to within a factor of two).",
        ]
    return "\n".join(lines) + "\n"


def plot(payload: dict[str, Any], path: Path) -> None:
    """p50 and p99 TTFT against the offered rate, one colour per mode, with the SLO line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, mode in enumerate(dict.fromkeys(lv["mode"] for lv in payload["levels"])):
        mine = [lv for lv in payload["levels"] if lv["mode"] == mode]
        xs = [lv["rate"] for lv in mine]
        for q, style in (("p50", "-o"), ("p99", "--^")):
            ax.plot(
                xs, [lv["summary"]["ttft_ms"][q] for lv in mine], style, color=f"C{i}", label=f"{mode} {q}"
            )
    ax.axhline(payload["config"]["slo_ttft_ms"], color="grey", linestyle=":", label="SLO (p99)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("offered rate (requests/s)")
    ax.set_ylabel("TTFT (ms)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("TTFT vs request rate, per blend mode")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
