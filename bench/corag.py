"""Chunk selection benchmark: top-k vs CORAG at equal budgets on MuSiQue, cold and with warm caches.

Each example's 10 passages are its candidates, embedded once with the repository's embedder (as a
collection's index holds them) and tokenized as the engine's document pieces. The data carries no
is_supporting flags, so a passage counts as supporting when it contains a gold answer string
(case-insensitive); examples with no such passage (23 of 75) are left out of the recall figures.

For each prefill budget B (tokens, all chunks cold) both methods choose under B; recall is the share
of supporting passages selected, and "hit" whether at least one was. The warm runs keep the same
latency budget, B tokens at the measured prefill speed in milliseconds, with every passage's cache
warm under cacheblend r = 0.15: a warm passage costs its recomputed share (r plus the two check
layers run on every token), so the same time admits more passages. TTFT is estimated as the
selection's tree-search time plus prefill of the system prefix, the chosen passages' cost and the
question at the measured speed (the same model as in the engine, float32 on this machine).

Rerun:  .venv/bin/python -m bench.corag            (~3 min on 2 cores, most of it embedding passages)
        .venv/bin/python -m bench.corag --examples 20
Writes: bench/results/corag.{json,md,png}
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import datasets
from bench.common import RESULTS, machine, write_results
from engine.blend.options import BlendOptions
from engine.config import EngineConfig
from engine.prefill_speed import measure_prefill_tokens_per_s
from engine.torch_engine import TorchEngine
from retrieval.embedder import Embedder
from retrieval.selection import Candidate, CostModel, SelectionConfig, select_chunks
from retrieval.selection.embedding_scorer import EmbeddingScorer
from server.settings import Settings

BUDGETS = (600, 1200, 1800, 2400)  # prefill tokens; MuSiQue passages are ~600 tokens each
RATIO = BlendOptions().ratio


class QueryMemo(Embedder):
    """The real embedder, embedding each question once: a server has the query vector from retrieval
    already, and the 16 runs per question would otherwise time 16 embeddings of it. The first
    embedding's time is kept, reported as `query embed ms`."""

    def __init__(self) -> None:
        super().__init__()
        self.memo: dict[str, np.ndarray] = {}
        self.first_ms: list[float] = []

    def embed_query(self, query: str) -> np.ndarray:
        if query not in self.memo:
            started = time.perf_counter()
            self.memo[query] = super().embed_query(query)
            self.first_ms.append((time.perf_counter() - started) * 1000.0)
        return self.memo[query]


SETTINGS = (("topk", "cold"), ("corag", "cold"), ("topk", "warm"), ("corag", "warm"))


def load_examples(limit: int, engine: TorchEngine, embedder: Embedder) -> list[dict[str, Any]]:
    examples = datasets.musique()[:limit]
    texts = [f"{c['title']}. {c['text']}" for ex in examples for c in ex["ctxs"]]
    started = time.perf_counter()
    vectors = embedder.embed(texts)
    embed_s = time.perf_counter() - started
    out, k = [], 0
    for ex in examples:
        answers = [a.lower() for a in ex["answers"]]
        cands = []
        for j in range(len(ex["ctxs"])):
            text = texts[k]
            ids = engine.prompts.document(text).ids
            cands.append(Candidate(f"p{j}", text, len(ids), False, ids, vectors[k]))
            k += 1
        support = {j for j, c in enumerate(cands) if any(a in c.text.lower() for a in answers)}
        prompts = engine.prompts
        fixed = len(prompts.prefix(None, True).ids) + len(prompts.query(ex["question"], True).ids)
        out.append({"question": ex["question"], "cands": cands, "support": support, "fixed_tokens": fixed})
    print(f"{len(texts)} passages embedded in {embed_s:.1f} s", flush=True)
    return out


def run(
    examples: list[dict], scorer: EmbeddingScorer, speed: float, full_share: float, cfg: SelectionConfig
) -> list[dict[str, Any]]:
    cold_model = CostModel(mode="full", tokens_per_s=speed)
    warm_model = CostModel(mode="cacheblend", ratio=RATIO, full_layer_share=full_share, tokens_per_s=speed)
    rows = []
    for budget in BUDGETS:
        budget_ms = 1000.0 * budget / speed
        for method, cache in SETTINGS:
            per: list[dict[str, float]] = []
            for ex in examples:
                cands: list[Candidate] = ex["cands"]
                if cache == "warm":
                    cands = [Candidate(c.id, c.text, c.n_tokens, True, c.token_ids, c.vector) for c in cands]
                model = warm_model if cache == "warm" else cold_model
                run_cfg = cfg.model_copy(update={"method": method, "budget": budget_ms, "budget_unit": "ms"})
                sel = select_chunks(ex["question"], cands, scorer, model, run_cfg)
                tree_ms = sel.search_ms - sel.prepare_ms
                prefill_ms = sel.cost + 1000.0 * ex["fixed_tokens"] / speed
                support = ex["support"]
                per.append({
                    "recall": len(support & set(sel.indices)) / len(support) if support else float("nan"),
                    "hit": float(bool(support & set(sel.indices))) if support else float("nan"),
                    "chunks": len(sel.chunks), "tokens": sel.tokens, "cost_ms": sel.cost,
                    "reward": sel.reward,
                    "search_ms": tree_ms, "prepare_ms": sel.prepare_ms, "ttft_ms": prefill_ms + tree_ms,
                    "share": tree_ms / (prefill_ms + tree_ms), "iterations": sel.iterations,
                    "capped": float(sel.stopped_by == "time"),
                })  # fmt: skip
            rows.append(summarise(budget, budget_ms, method, cache, per))
            r = rows[-1]
            print(f"B={budget} {method}/{cache}: recall {r['recall']:.3f} hit {r['hit']:.3f} chunks "
                  f"{r['chunks']:.2f} tokens {r['tokens']:.0f} search {r['search_ms']:.2f} ms "
                  f"({100 * r['share']:.2f}% of TTFT {r['ttft_ms']:.0f} ms)", flush=True)  # fmt: skip
    return rows


def summarise(budget: int, budget_ms: float, method: str, cache: str, per: list[dict]) -> dict[str, Any]:
    def mean(key: str) -> float:
        vals = [p[key] for p in per if not np.isnan(p[key])]
        return float(statistics.fmean(vals)) if vals else float("nan")

    return {
        "budget_tokens": budget, "budget_ms": budget_ms, "method": method, "cache": cache,
        **{k: mean(k) for k in ("recall", "hit", "chunks", "tokens", "cost_ms", "reward", "search_ms",
                                "prepare_ms", "ttft_ms", "share", "iterations", "capped")},
        "search_ms_p95": float(np.percentile([p["search_ms"] for p in per], 95)),
    }  # fmt: skip


def table(rows: list[dict], meta: dict) -> str:
    lines = [
        "# Chunk selection: top-k vs CORAG on MuSiQue, cold and with warm chunk caches",
        "",
        f"{meta['examples']} examples x 10 passages ({meta['with_support']} with an answer-bearing passage, "
        f"which recall counts); embedder {meta['embedder']}, scorer `embedding`; CORAG iterations "
        f"{meta['config']['iterations']}, C {meta['config']['c']}, lambda {meta['config']['lambda_']}, time "
        f"cap {meta['config']['time_cap_ms']:g} ms. Prefill speed {meta['tokens_per_s']:.0f} tokens/s "
        f"(float32, {meta['machine']['threads']} threads); warm: cacheblend r = {RATIO}, a warm token costs "
        f"{meta['warm_share']:.3f} of a cold one. Budget: B tokens cold, the same milliseconds warm.",
        "",
        "| budget (tokens / ms) | method | cache | recall | hit | chunks | prompt tokens | est. TTFT ms "
        "| search ms (p95) | search share of TTFT | capped |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['budget_tokens']} / {r['budget_ms']:.0f} | {r['method']} | {r['cache']} "
            f"| {r['recall']:.3f} | {r['hit']:.3f} | {r['chunks']:.2f} | {r['tokens']:.0f} "
            f"| {r['ttft_ms']:.0f} "
            f"| {r['search_ms']:.2f} ({r['search_ms_p95']:.2f}) | {100 * r['share']:.2f}% "
            f"| {100 * r['capped']:.0f}% |"
        )
    lines += [
        "",
        "recall: share of answer-bearing passages selected; hit: at least one selected. search ms: the tree "
        "search (top-k: one batched scoring of the candidates alone); its share is of the estimated TTFT. "
        f"Embedding the question takes {meta['query_embed_ms']:.1f} ms (median), paid by retrieval anyway. "
        "capped: searches the time cap stopped. Supporting passages are approximated by answer "
        "containment (the data has no is_supporting flags).",
    ]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for method, cache in SETTINGS:
        sub = [r for r in rows if r["method"] == method and r["cache"] == cache]
        style = "-" if cache == "warm" else "--"
        ax1.plot([r["budget_ms"] for r in sub], [r["recall"] for r in sub], style, marker="o",
                 label=f"{method}, {cache}")  # fmt: skip
        ax2.plot([r["budget_ms"] for r in sub], [100 * r["share"] for r in sub], style, marker="o",
                 label=f"{method}, {cache}")  # fmt: skip
    ax1.set_xlabel("prefill budget (estimated ms)")
    ax1.set_ylabel("recall of answer-bearing passages")
    ax1.set_ylim(0, 1)
    ax1.legend()
    ax2.set_xlabel("prefill budget (estimated ms)")
    ax2.set_ylabel("selection time, % of estimated TTFT")
    ax2.legend()
    fig.suptitle("Top-k vs CORAG on MuSiQue (10 passages per question)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=75)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=SelectionConfig().iterations)
    datasets.add_data_option(parser)
    args = parser.parse_args()
    datasets.use_data(args.data, datasets.MUSIQUE)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    engine = TorchEngine(EngineConfig(Settings().model_dir(), dtype="float32", num_threads=args.threads))
    embedder = QueryMemo()
    examples = load_examples(args.examples, engine, embedder)
    speed = measure_prefill_tokens_per_s(engine.model, 1024, rounds=1)
    layers = engine.model_config.num_layers
    full_share = (BlendOptions().check_layer + 1) / layers
    cfg = SelectionConfig(iterations=args.iterations)
    rows = run(examples, EmbeddingScorer(embedder), speed, full_share, cfg)
    meta = {
        "examples": len(examples), "with_support": sum(bool(ex["support"]) for ex in examples),
        "embedder": embedder.name, "tokens_per_s": speed, "machine": machine(), "config": cfg.model_dump(),
        "warm_share": CostModel("cacheblend", RATIO, full_share).warm_share(first=False),
        "query_embed_ms": float(np.median(embedder.first_ms)),
        "mean_passage_tokens": float(np.mean([c.n_tokens for ex in examples for c in ex["cands"]])),
    }  # fmt: skip
    text = table(rows, meta)
    write_results("corag", {"meta": meta, "rows": rows}, text)
    plot(rows, RESULTS / "corag.png")
    print(text)


if __name__ == "__main__":
    main()
