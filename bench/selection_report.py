"""The selection benchmark's summary rows, markdown table and F1-versus-TTFT plot."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

MEANS = (
    "f1",
    "recall",
    "chunks",
    "prompt_tokens",
    "recomputed_tokens",
    "prefilled_tokens",
    "search_ms",
    "ttft_ms",
    "search_share",
)
BASELINE = "topk"
TARGET_METHOD = "corag-aware"
MAX_SEARCH_SHARE = 0.10  # the bound on the search's share of TTFT


def _mean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return float(statistics.fmean(kept)) if kept else float("nan")


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per dataset, budget and method; TTFT and F1 also relative to top-k's on the same questions."""
    keys = list(dict.fromkeys((r["dataset"], r["budget_tokens"], r["method"]) for r in records))
    rows: list[dict[str, Any]] = []
    for dataset, budget, method in keys:
        per = [
            r for r in records if (r["dataset"], r["budget_tokens"], r["method"]) == (dataset, budget, method)
        ]
        row: dict[str, Any] = {
            "dataset": dataset,
            "budget_tokens": budget,
            "budget_ms": per[0]["budget_ms"],
            "method": method,
        }
        row.update({k: _mean([p[k] for p in per]) for k in MEANS})
        row["ttft_p50_ms"] = float(statistics.median(p["ttft_ms"] for p in per))
        row["examples"] = len(per)
        base = {
            r["example"]: r
            for r in records
            if (r["dataset"], r["budget_tokens"], r["method"]) == (dataset, budget, BASELINE)
        }
        paired = [p for p in per if p["example"] in base]
        if paired:
            # ratio of the mean TTFTs over the questions both answered (a noisy machine's spikes average out)
            row["ttft_vs_topk"] = _mean([p["ttft_ms"] for p in paired]) / _mean(
                [base[p["example"]]["ttft_ms"] for p in paired]
            )
            row["f1_minus_topk"] = _mean([p["f1"] - base[p["example"]]["f1"] for p in paired])
        rows.append(row)
    return rows


def verdicts(rows: list[dict[str, Any]]) -> list[str]:
    """Whether cache-aware CORAG answers at least as well as top-k, no slower, with a small search."""
    out = []
    for r in rows:
        if r["method"] != TARGET_METHOD or "ttft_vs_topk" not in r:
            continue
        ok_f1, ok_ttft = r["f1_minus_topk"] >= 0, r["ttft_vs_topk"] <= 1.0
        ok_share = r["search_share"] <= MAX_SEARCH_SHARE
        met = "met" if ok_f1 and ok_ttft and ok_share else "missed"
        out.append(
            f"- {r['dataset']}, {r['budget_tokens']} tokens: target {met} "
            f"(F1 {r['f1_minus_topk']:+.3f} vs top-k, "
            f"TTFT x{r['ttft_vs_topk']:.2f} of top-k's, search {100 * r['search_share']:.2f}% of TTFT)"
        )
    return out


def table(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    examples = meta.get("examples", {})
    cfg = meta["config"]
    lines = [
        "# Chunk selection end to end: top-k vs CORAG vs cache-aware CORAG",
        "",
        f"SQuAD 2.0 answerable questions: {examples.get('squad', 0)} (the 10 paragraphs of the question's "
        f"article closest to it); MuSiQue: {examples.get('musique', 0)} (its 10 passages)"
        f"{' (tuning slice)' if meta.get('dev') else ''}. Answers greedy, {meta['max_tokens']} tokens, "
        f"blend mode {meta['mode']} r = {meta['ratio']}; prefill speed {meta['tokens_per_s']:.0f} tokens/s "
        f"plus {meta.get('pair_s', 0.0) * 1e9:.1f} ns per attention pair turns the budget into ms. "
        f"CORAG: {cfg['iterations']} iterations, C {cfg['c']}, lambda "
        f"{cfg['lambda_']}, greedy completion; embedding scorer, distraction {meta['distraction']}. "
        f"Warming the candidates' caches took {meta['warm_s']:.0f} s "
        f"of the run's {meta.get('wall_s', 0):.0f} s. "
        f"Machine {meta['machine']}.",
        "",
        "| dataset | budget (tokens / ms) | method | F1 | F1 - top-k | gold recall | chunks | prompt tokens "
        "| recomputed | prefilled | search ms | TTFT ms (mean / p50) | TTFT / top-k | search share |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['budget_tokens']} / {r['budget_ms']:.0f} | {r['method']} "
            f"| {r['f1']:.3f} | {r.get('f1_minus_topk', math.nan):+.3f} | {r['recall']:.3f} "
            f"| {r['chunks']:.1f} "
            f"| {r['prompt_tokens']:.0f} | {r['recomputed_tokens']:.0f} | {r['prefilled_tokens']:.0f} "
            f"| {r['search_ms']:.1f} | {r['ttft_ms']:.0f} / {r['ttft_p50_ms']:.0f} "
            f"| {r.get('ttft_vs_topk', math.nan):.2f} | {100 * r['search_share']:.2f}% |"
        )
    lines += [
        "",
        *verdicts(rows),
        "",
        "topk and corag price every chunk as cold and are served with cold caches (a system without "
        "chunk caching); the -aware methods price a warm chunk at its recompute share and are served "
        "with every candidate warm. recomputed: cached tokens recomputed by the blend; prefilled: tokens "
        "that went through the model (uncached plus recomputed). TTFT: the search plus the engine's time "
        "to first token, measured. Gold recall: MuSiQue counts passages containing an answer string, "
        "SQuAD the question's own paragraph (questions whose paragraph was not retrieved are left out).",
    ]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Answer F1 against measured TTFT, one panel per dataset, one marker per method and budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        for i, method in enumerate(dict.fromkeys(r["method"] for r in rows)):
            sub = [r for r in rows if r["dataset"] == dataset and r["method"] == method]
            ax.plot([r["ttft_ms"] for r in sub], [r["f1"] for r in sub], "o", color=f"C{i}", label=method)
            for r in sub:
                ax.annotate(f"B={r['budget_tokens']}", (r["ttft_ms"], r["f1"]), fontsize=7)
        ax.set_title(dataset)
        ax.set_xscale("log")
        ax.set_xlabel("TTFT (ms, measured, log scale)")
        ax.set_ylabel("answer F1")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("chunk selection: answer quality vs time to first token")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
