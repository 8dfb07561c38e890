"""The selection benchmark's markdown table and its F1-versus-TTFT plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def table(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    examples = meta.get("examples", {})
    lines = [
        "# Chunk selection end to end: top-k vs CORAG vs cache-aware CORAG",
        "",
        f"SQuAD 2.0 answerable questions: {examples.get('squad', 0)} (10 retrieved paragraphs of the "
        f"question's article each); MuSiQue: {examples.get('musique', 0)} (its 10 passages). Every "
        f"candidate's chunk cache warm; answers greedy, {meta['max_tokens']} tokens, blend mode "
        f"{meta['mode']} r = {meta['ratio']}; prefill speed {meta['tokens_per_s']:.0f} tokens/s sets the "
        f"budget in ms. CORAG: {meta['config']['iterations']} iterations, C {meta['config']['c']}, lambda "
        f"{meta['config']['lambda_']}, greedy completion of the pick. Machine {meta['machine']}.",
        "",
        "| dataset | budget (tokens / ms) | method | F1 | gold recall | chunks | prompt tokens "
        "| recomputed tokens | search ms | TTFT ms (mean / p50) | search share |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['budget_tokens']} / {r['budget_ms']:.0f} | {r['method']} "
            f"| {r['f1']:.3f} | {r['recall']:.3f} | {r['chunks']:.1f} | {r['prompt_tokens']:.0f} "
            f"| {r['recomputed_tokens']:.0f} | {r['search_ms']:.1f} "
            f"| {r['ttft_ms']:.0f} / {r['ttft_p50_ms']:.0f} | {100 * r['search_share']:.2f}% |"
        )
    lines += [
        "",
        "topk and corag price every chunk as cold; corag-aware prices a warm chunk at its recompute share, "
        "so the same budget admits more chunks. TTFT is measured: the selection's search plus the "
        "engine's time to first token with the chunk caches warm. Gold recall: MuSiQue counts passages "
        "containing an answer string, SQuAD the question's own paragraph.",
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
            ax.plot([r["ttft_ms"] for r in sub], [r["f1"] for r in sub], "-o", color=f"C{i}", label=method)
            for r in sub:
                ax.annotate(f"B={r['budget_tokens']}", (r["ttft_ms"], r["f1"]), fontsize=7)
        ax.set_title(dataset)
        ax.set_xlabel("TTFT (ms, measured)")
        ax.set_ylabel("answer F1")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("chunk selection: answer quality vs time to first token")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
