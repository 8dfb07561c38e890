"""The serving benchmark's markdown tables and its throughput / latency plot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def _ms(dist: dict[str, float]) -> str:
    vals = [dist.get(f"p{q}", math.nan) for q in (50, 90, 99)]
    return " / ".join("-" if math.isnan(v) else f"{v:.0f}" for v in vals)


def _level(payload: dict[str, Any], scheduler: str, clients: int) -> dict[str, Any] | None:
    for level in payload["levels"]:
        if level["scheduler"] == scheduler and level["clients"] == clients:
            summary: dict[str, Any] = level["summary"]
            return summary
    return None


def ratios(payload: dict[str, Any]) -> list[dict[str, float]]:
    """Per concurrency: batched / one-at-a-time throughput, and batched p99 TTFT / its value at 1."""
    base = _level(payload, "batched", 1)
    rows = []
    for clients in dict.fromkeys(lv["clients"] for lv in payload["levels"]):
        batched, single = _level(payload, "batched", clients), _level(payload, "one-at-a-time", clients)
        if batched is None or single is None:
            continue
        rows.append(
            {
                "clients": clients,
                "throughput_ratio": batched["output_token_throughput"] / single["output_token_throughput"]
                if single["output_token_throughput"]
                else math.nan,
                "p99_ttft_vs_c1": batched["ttft_ms"]["p99"] / base["ttft_ms"]["p99"] if base else math.nan,
            }
        )
    return rows


def markdown(payload: dict[str, Any]) -> str:
    cfg = payload["config"]
    lines = [
        "# Serving: batched scheduler vs one request at a time",
        "",
        f"Command: `{payload['command']}`",
        "",
        f"Closed loop over HTTP (streamed /generate), {cfg['passages']} MuSiQue passages per question "
        f"from a pool of {cfg['pool']}, passage order shuffled, max_tokens {cfg['max_tokens']}, greedy, "
        f"server default blend mode on warm chunk caches; {cfg['per_client']} requests per client "
        f"(at least {cfg['min_requests']}, at most {cfg.get('max_requests', 'any number of')} a level, never "
        f"fewer than the clients). Batched: max_batch_size {cfg['batch']}. "
        f"Each server {cfg['threads']} torch threads. Code {payload['git']}; machine {payload['machine']}.",
        "",
        "Latencies in ms as p50 / p90 / p99.",
        "",
        "| scheduler | clients | ok / sent | req/s | output tok/s | TTFT | ITL | E2E |",
        "| --- | ---: | --- | ---: | ---: | --- | --- | --- |",
    ]
    for level in payload["levels"]:
        s = level["summary"]
        lines.append(
            f"| {level['scheduler']} | {level['clients']} | {s['completed']} / {s['sent']} "
            f"| {s['request_throughput']:.2f} | {s['output_token_throughput']:.1f} | {_ms(s['ttft_ms'])} "
            f"| {_ms(s['itl_ms'])} | {_ms(s['e2e_ms'])} |"
        )
    lines += [
        "",
        "| clients | throughput, batched / one-at-a-time | batched p99 TTFT / its value at 1 client |",
        "| ---: | ---: | ---: |",
    ]
    for row in ratios(payload):
        lines.append(f"| {row['clients']} | {row['throughput_ratio']:.2f}x | {row['p99_ttft_vs_c1']:.2f}x |")
    return "\n".join(lines) + "\n"


def plot(payload: dict[str, Any], path: Path) -> None:
    """Output tokens/s and p99 TTFT against the number of clients, one line per scheduler."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, scheduler in enumerate(dict.fromkeys(lv["scheduler"] for lv in payload["levels"])):
        levels = [lv for lv in payload["levels"] if lv["scheduler"] == scheduler]
        xs = [lv["clients"] for lv in levels]
        axes[0].plot(xs, [lv["summary"]["output_token_throughput"] for lv in levels], "-o", color=f"C{i}")
        for q, style in (("p50", "-o"), ("p99", "--^")):
            ys = [lv["summary"]["ttft_ms"][q] for lv in levels]
            axes[1].plot(xs, ys, style, color=f"C{i}", label=f"{scheduler} {q}")
        axes[0].plot([], [], "-o", color=f"C{i}", label=scheduler)
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("output tokens / s")
    axes[1].set_ylabel("TTFT (ms)")
    axes[1].set_yscale("log")
    fig.suptitle("serving: batched vs one at a time (streamed /generate)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
