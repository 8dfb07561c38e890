"""The rate sweep's sustained rates, markdown table and latency-versus-rate plot.

Rerender the table and plot from a results JSON (after a wording change, without rerunning):
    .venv/bin/python -m bench.load_sweep_report bench/results/load_sweep.json
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any


def sustained(levels: list[dict[str, Any]], modes: list[str]) -> dict[str, float]:
    """Per mode, the highest rate whose level held the SLO (0 when even the first broke it)."""
    out = {}
    for mode in modes:
        held = [lv["rate"] for lv in levels if lv["mode"] == mode and not lv["slo_broken"]]
        out[mode] = max(held, default=0.0)
    return out


def first_broken(levels: list[dict[str, Any]], mode: str) -> float | None:
    """The rate of the level that broke the SLO (the sustained rate lies below it), None if none did."""
    return next((lv["rate"] for lv in levels if lv["mode"] == mode and lv["slo_broken"]), None)


def _levels_text(cfg: dict[str, Any]) -> str:
    if cfg.get("rates"):
        text = "rates " + ", ".join(f"{r:g}" for r in cfg["rates"][: cfg["max_levels"]]) + " req/s"
    else:
        text = f"rates from {cfg['start_rate']:g} req/s doubling"
    # results from before the option existed ran one mode after another
    if cfg.get("order", "by-mode") == "interleaved":
        return text + ", interleaved (each rate runs every mode in turn, then the next rate)"
    return text + ", one mode after another"


def _comparison(payload: dict[str, Any], blend: str, base: str) -> str:
    """The ratio of sustained rates, with the range the levels' spacing leaves it in."""
    rates, levels = payload["sustained"], payload["levels"]
    text = f"{_ratio(rates[blend], rates.get(base, 0.0))} the rate of {base}"
    top_blend, top_base = first_broken(levels, blend), first_broken(levels, base)
    if rates.get(base, 0.0) > 0 and top_blend is not None and top_base is not None:
        # each true rate lies in [held, first broken): so does their ratio, between these bounds
        low, high = rates[blend] / top_base, top_blend / rates[base]
        text += f" (between {low:.2f}x and {high:.2f}x given the levels' spacing)"
    return text


def _num(value: float | None) -> float:
    """A percentile as a float: a saved JSON has None where nothing was measured."""
    return math.nan if value is None else value


def _ms(dist: dict[str, float | None]) -> str:
    vals = [_num(dist.get(f"p{q}")) for q in (50, 90, 99)]
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
        f"level, {_levels_text(cfg)}. SLO: p99 TTFT <= {cfg['slo_ttft_ms']:g} "
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
    lines += [
        "",
        "| mode | sustained rate (req/s) | first level that broke the SLO |",
        "| --- | ---: | ---: |",
    ]
    for mode, rate in rates.items():
        top = first_broken(payload["levels"], mode)
        lines.append(f"| {mode} | {rate:g} | {'-' if top is None else f'{top:g}'} |")
    blend = next((m for m in rates if m not in ("prefix", "full")), None)
    others = [m for m in ("full", "prefix") if m in rates]
    if blend is not None and others:
        parts = " and ".join(_comparison(payload, blend, m) for m in others)
        lines += ["", f"{blend} sustains {parts}."]
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
                xs,
                [_num(lv["summary"]["ttft_ms"][q]) for lv in mine],
                style,
                color=f"C{i}",
                label=f"{mode} {q}",
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


def rerender(json_path: Path) -> None:
    """Write the markdown and PNG next to a sweep's JSON again, from its recorded levels."""
    payload = json.loads(json_path.read_text())
    json_path.with_suffix(".md").write_text(markdown(payload))
    plot(payload, json_path.with_suffix(".png"))


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        rerender(Path(arg))
