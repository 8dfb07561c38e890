"""The load test's markdown table and its latency-versus-load plot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def _ms(dist: dict[str, float]) -> str:
    vals = [dist.get(f"p{q}", math.nan) for q in (50, 90, 99)]
    return " / ".join("-" if math.isnan(v) else f"{v:.0f}" for v in vals)


def level_label(level: dict[str, Any]) -> str:
    if level["kind"] == "rate":
        return f"{level['load']:g} req/s"
    return f"{level['load']:g} clients"


def markdown(payload: dict[str, Any]) -> str:
    cfg = payload["config"]
    lines = [
        "# Load test: streamed /generate on MuSiQue questions",
        "",
        f"Command: `{payload['command']}`",
        "",
        f"Target {payload['target']}; {cfg['passages']} passages per question from a pool of "
        f"{cfg['pool']} questions (Zipf s={cfg['zipf']}, passage order shuffled: {cfg['shuffle']}), "
        f"max_tokens {cfg['max_tokens']}, {cfg['requests']} requests per level, "
        f"{cfg['warmup']} warm-up requests, levels stop after {cfg['max_seconds']} s. "
        f"Chunk caches: {'pre-warmed (each pool question asked once first)' if cfg['prewarm'] else 'cold'}. "
        f"SLO: TTFT <= {cfg['slo_ttft_ms']:g} ms and every inter-token gap <= {cfg['slo_itl_ms']:g} ms. "
        f"Code {payload['git']}; machine {payload['machine']}.",
        "",
        "Latencies in ms as p50 / p90 / p99. Goodput: requests per second that met the SLO.",
        "",
        "| mode | load | sent | ok | errors | req/s | goodput | TTFT | ITL | TPOT | E2E "
        "| cached share | KV hit rate |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | --- | ---: | --- |",
    ]
    for level in payload["levels"]:
        s = level["summary"]
        hits = ", ".join(f"{t} {r:.0%}" for t, r in level["kv_hit_rates"].items()) or "-"
        lines.append(
            f"| {level['mode']} | {level_label(level)} | {s['sent']} | {s['completed']} | {s['errors']} "
            f"| {s['request_throughput']:.2f} | {s['goodput']:.2f} | {_ms(s['ttft_ms'])} "
            f"| {_ms(s['itl_ms'])} | {_ms(s['tpot_ms'])} | {_ms(s['e2e_ms'])} "
            f"| {s['cached_token_share']:.0%} | {hits} |"
        )
    errors = {k: v for level in payload["levels"] for k, v in level["summary"]["error_kinds"].items()}
    if errors:
        lines += ["", f"Errors by kind: {errors}"]
    return "\n".join(lines) + "\n"


def plot(payload: dict[str, Any], path: Path) -> None:
    """TTFT and end-to-end latency (p50 and p99) against the offered load, one line per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [k for k in ("rate", "concurrency") if any(lv["kind"] == k for lv in payload["levels"])]
    fig, axes = plt.subplots(len(kinds), 2, figsize=(10, 3.6 * len(kinds)), squeeze=False)
    for row, kind in enumerate(kinds):
        for col, metric in enumerate(("ttft_ms", "e2e_ms")):
            ax = axes[row][col]
            for i, mode in enumerate(dict.fromkeys(lv["mode"] for lv in payload["levels"])):
                levels = [lv for lv in payload["levels"] if lv["kind"] == kind and lv["mode"] == mode]
                xs = [lv["load"] for lv in levels]
                for q, style in (("p50", "-o"), ("p99", "--^")):
                    ys = [lv["summary"][metric][q] for lv in levels]
                    ax.plot(xs, ys, style, color=f"C{i}", label=f"{mode} {q}")
            ax.set_xlabel("offered rate (req/s)" if kind == "rate" else "concurrent clients")
            ax.set_ylabel(f"{metric.removesuffix('_ms').upper()} (ms)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle("latency vs load (streamed /generate)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
