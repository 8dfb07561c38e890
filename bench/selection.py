"""Chunk selection end to end: top-k vs CORAG vs cache-aware CORAG at equal budgets, answered by the engine.

Candidates per question:
- MuSiQue: the example's 10 passages (gold: passages containing an answer string);
- SQuAD 2.0 (answerable questions): the 10 paragraphs of the question's article closest to it by
  embedding, as a collection's retriever returns them (gold: the question's own paragraph).
Every candidate's chunk cache is warmed first, as ingestion leaves it. Then per budget B (prefill
tokens of cold chunks, turned into milliseconds at the measured prefill speed) three selections:
- topk: rank by utility, fill B counting every chunk at full price (the cache-unaware baseline);
- corag: the tree search under the same cold prices;
- corag-aware: the tree search pricing warm chunks at their recompute share in the default blend
  mode, so the same milliseconds admit more chunks.
Each selection is answered by the engine (greedy, default blend mode) and scored: answer F1 against
the gold answers, gold-chunk recall, prompt and recomputed tokens, search time, and TTFT measured
as the search plus the engine's time to first token; the search's share of that TTFT.

Rerun:  .venv/bin/python -m bench.selection                  (~12 min on 2 cores)
        .venv/bin/python -m bench.selection --musique 8 --squad 8 --budgets 600 --squad-budgets 300
Writes: bench/results/selection.{json,md,png}
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.common import DATA, RESULTS, machine, write_results
from bench.corag import QueryMemo
from bench.metrics import best_f1
from bench.selection_report import plot, table
from cache.config import StoreConfig
from cache.tiered import TieredStore
from engine.blend.options import BlendOptions
from engine.chunk_warmup import warm_chunks
from engine.config import EngineConfig
from engine.events import FinishEvent
from engine.sampling import SamplingParams
from engine.torch_engine import TorchEngine
from retrieval.selection import Candidate, CostModel, SelectionConfig, select_chunks
from retrieval.selection.embedding_scorer import EmbeddingScorer
from retrieval.selection.speed import measure_prefill_tokens_per_s
from server.settings import Settings

METHODS = ("topk", "corag", "corag-aware")


@dataclass(frozen=True)
class Example:
    dataset: str
    question: str
    answers: list[str]
    cands: list[Candidate]
    gold: frozenset[int]


def candidates(engine: TorchEngine, texts: list[str], vectors: np.ndarray) -> list[Candidate]:
    out = []
    for j, text in enumerate(texts):
        ids = engine.prompts.document(text).ids
        out.append(Candidate(f"c{j}", text, len(ids), True, tuple(ids), vectors[j]))
    return out


def musique(n: int, engine: TorchEngine, embedder: QueryMemo) -> list[Example]:
    out = []
    for ex in json.loads((DATA / "musique_dev.json").read_text()):
        answers = [a.lower() for a in ex["answers"]]
        texts = [f"{c['title']}. {c['text']}" for c in ex["ctxs"]]
        gold = frozenset(j for j, t in enumerate(texts) if any(a in t.lower() for a in answers))
        if gold:  # recall needs an answer-bearing passage
            cands = candidates(engine, texts, embedder.embed(texts))
            out.append(Example("musique", ex["question"], ex["answers"], cands, gold))
        if len(out) == n:
            break
    return out


def squad(n: int, engine: TorchEngine, embedder: QueryMemo, k: int = 10) -> list[Example]:
    articles = json.loads((DATA / "squad_v2_dev_subset.json").read_text())["data"]
    questions = [
        (a, p, qa)
        for a, article in enumerate(articles)
        for p, para in enumerate(article["paragraphs"])
        for qa in para["qas"]
        if not qa["is_impossible"]
    ]
    step = max(1, len(questions) // n)  # spread over the articles
    vectors = {a: embedder.embed([p["context"] for p in art["paragraphs"]]) for a, art in enumerate(articles)}
    out = []
    for a, p, qa in questions[::step][:n]:
        paras = articles[a]["paragraphs"]
        order = np.argsort(-(vectors[a] @ embedder.embed_query(qa["question"])))[:k]
        texts = [paras[i]["context"] for i in order]
        gold = frozenset(j for j, i in enumerate(order) if i == p)
        answers = sorted({ans["text"] for ans in qa["answers"]})
        out.append(
            Example("squad", qa["question"], answers, candidates(engine, texts, vectors[a][order]), gold)
        )
    return out


def answer(engine: TorchEngine, ex: Example, picked: tuple[int, ...], max_tokens: int) -> dict[str, Any]:
    prompt = engine.build_prompt(ex.question, [ex.cands[i].text for i in picked], None)
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0)
    final = next(
        e for e in engine.generate(prompt, params, blend=BlendOptions()) if isinstance(e, FinishEvent)
    )
    return {
        "text": final.text,
        "ttft_ms": final.ttft_ms,
        "prompt_tokens": final.prompt_tokens,
        "recomputed_tokens": final.extra_usage.get("recomputed_tokens", final.prompt_tokens),
    }


def run_one(
    engine: TorchEngine, ex: Example, method: str, budget_ms: float, models: dict[str, CostModel], args: Any
) -> dict[str, Any]:
    aware = method == "corag-aware"
    cands = (
        ex.cands
        if aware
        else [Candidate(c.id, c.text, c.n_tokens, False, c.token_ids, c.vector) for c in ex.cands]
    )
    cfg = SelectionConfig(method="topk" if method == "topk" else "corag", budget=budget_ms, budget_unit="ms")
    sel = select_chunks(ex.question, cands, args.scorer, models["warm" if aware else "cold"], cfg)
    got = answer(engine, ex, sel.indices, args.max_tokens)
    ttft = got["ttft_ms"] + sel.search_ms
    return {
        "f1": best_f1(got["text"], ex.answers),
        # nan when retrieval missed the gold paragraph: no selection could recall it
        "recall": len(ex.gold & set(sel.indices)) / len(ex.gold) if ex.gold else float("nan"),
        "chunks": len(sel.indices),
        "prompt_tokens": got["prompt_tokens"],
        "recomputed_tokens": got["recomputed_tokens"],
        "search_ms": sel.search_ms,
        "ttft_ms": ttft,
        "search_share": sel.search_ms / ttft,
    }


def summarise(dataset: str, budget: int, budget_ms: float, method: str, per: list[dict[str, Any]]) -> dict:
    keys = (
        "f1",
        "recall",
        "chunks",
        "prompt_tokens",
        "recomputed_tokens",
        "search_ms",
        "ttft_ms",
        "search_share",
    )
    row: dict[str, Any] = {
        "dataset": dataset,
        "budget_tokens": budget,
        "budget_ms": budget_ms,
        "method": method,
    }
    row.update({k: float(statistics.fmean(v for p in per if not math.isnan(v := p[k]))) for k in keys})
    row["ttft_p50_ms"] = float(np.median([p["ttft_ms"] for p in per]))
    row["examples"] = len(per)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--musique", type=int, default=16)
    p.add_argument("--squad", type=int, default=24)
    p.add_argument("--budgets", default="600,1200", help="MuSiQue: prefill tokens of cold chunks")
    p.add_argument("--squad-budgets", default="300,600", help="SQuAD (paragraphs of ~130 tokens)")
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--memory-gib", type=int, default=6, help="in-process chunk-cache tier")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Room for every candidate's cache in memory (float32 MuSiQue passages take ~28 MB each): with the
    # default 2 GiB tier the first-warmed caches were evicted before their questions came.
    store = TieredStore(StoreConfig(memory_bytes=args.memory_gib << 30))
    cfg = EngineConfig(Settings().model_dir(), dtype="float32", num_threads=args.threads)
    engine = TorchEngine(cfg, store)
    embedder = QueryMemo()
    args.scorer = EmbeddingScorer(embedder)
    examples = musique(args.musique, engine, embedder) + squad(args.squad, engine, embedder)
    speed = measure_prefill_tokens_per_s(engine.model, 1024, rounds=1)
    opts = BlendOptions()
    share = (opts.check_layer + 1) / engine.model_config.num_layers if opts.mode == "cacheblend" else 0.0
    models = {
        "cold": CostModel("full", tokens_per_s=speed),
        "warm": CostModel(opts.mode, opts.ratio, share, speed),
    }
    meta = {"machine": machine(), "tokens_per_s": speed, "mode": opts.mode, "ratio": opts.ratio,
            "config": SelectionConfig().model_dump(), "max_tokens": args.max_tokens}  # fmt: skip
    rows: list[dict[str, Any]] = []
    for dataset in ("squad", "musique"):
        subset = [ex for ex in examples if ex.dataset == dataset]
        texts = sorted({c.text for ex in subset for c in ex.cands})
        report = warm_chunks(engine.blender, engine.build_prompt, texts)
        print(f"{dataset}: {len(subset)} examples, {report.computed} chunk caches warmed", flush=True)
        budgets = args.squad_budgets if dataset == "squad" else args.budgets
        for budget in (int(b) for b in budgets.split(",")):
            budget_ms = 1000.0 * budget / speed
            for method in METHODS:
                per = [run_one(engine, ex, method, budget_ms, models, args) for ex in subset]
                rows.append(summarise(dataset, budget, budget_ms, method, per))
                r = rows[-1]
                print(
                    f"{dataset} B={budget} {method}: F1 {r['f1']:.3f} recall {r['recall']:.3f} chunks "
                    f"{r['chunks']:.1f} TTFT {r['ttft_ms']:.0f} ms search {r['search_ms']:.1f} ms",
                    flush=True,
                )
                meta["examples"] = {d: sum(ex.dataset == d for ex in examples) for d in ("squad", "musique")}
                write_results("selection", {"meta": meta, "rows": rows}, table(rows, meta))
    plot(rows, RESULTS / "selection.png")
    print(table(rows, meta))


if __name__ == "__main__":
    main()
