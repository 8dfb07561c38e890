"""Chunk selection end to end: top-k vs CORAG vs cache-aware CORAG at equal budgets, answered by the engine.

Candidates per question (bench/selection_data.py): MuSiQue, its 10 passages; SQuAD 2.0 answerable
questions, the 10 paragraphs of its article closest to it. A budget B is prefill tokens of cold
chunks, turned into milliseconds at the measured prefill speed, the same for every method:

- topk: rank by utility, fill B pricing every chunk at full price; served with cold chunk caches,
  as a system without chunk caching prefills them (the baseline);
- corag: the tree search under the same cold prices, served cold;
- topk-aware: top-k pricing a warm chunk at its recompute share, served warm (what method topk
  does on our server, where ingestion left every chunk warm);
- corag-aware: the tree search under those warm prices, served warm: the same milliseconds admit
  more chunks.

Each selection is answered by the engine alone (no batch scheduler; greedy, default blend mode).
Cold requests get a salt of their own, so no cache matches and nothing is written back. Per method:
answer F1, gold-chunk recall, prompt tokens, recomputed tokens (of cached ones), prefilled tokens,
search time, TTFT measured as the search plus the engine's time to first token, and the search's
share of that TTFT. The machine is shared, so compare ratios within one run. Results are rewritten
after every example: a run cut short still reports what it finished.

Rerun:  .venv/bin/python -m bench.selection --squad 30 --musique 0          (~6 min on 1 thread)
        .venv/bin/python -m bench.selection --squad 0 --musique 8 --name selection_musique
        add --dev for the disjoint tuning slice, --distraction X to try the scorer's penalty
Writes: bench/results/<name>.{json,md,png}
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Generator
from dataclasses import replace
from typing import Any

from bench import datasets
from bench.common import RESULTS, machine, write_results
from bench.corag import QueryMemo
from bench.metrics import best_f1
from bench.selection_data import Example, musique, squad
from bench.selection_report import plot, summarise, table
from cache.config import StoreConfig
from cache.tiered import TieredStore
from engine.blend.options import BlendOptions
from engine.chunk_warmup import warm_chunks
from engine.config import EngineConfig
from engine.events import FinishEvent
from engine.prefill_speed import measure_prefill_speed
from engine.sampling import SamplingParams
from engine.torch_engine import TorchEngine
from retrieval.selection import Candidate, CostModel, SelectionConfig, select_chunks
from retrieval.selection.embedding_scorer import EmbeddingScorer
from server.settings import Settings

METHODS = ("topk", "corag", "topk-aware", "corag-aware")


def answer(
    engine: TorchEngine, ex: Example, picked: tuple[int, ...], max_tokens: int, salt: str, repeats: int
) -> dict[str, Any]:
    prompt = engine.build_prompt(ex.question, [ex.cands[i].text for i in picked], None)
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0)
    ttfts = []
    for _ in range(repeats):  # the fastest of the repeats: the least disturbed on a shared machine
        events = engine.generate_unbatched(prompt, params, blend=BlendOptions(), salt=salt)
        final = next(e for e in events if isinstance(e, FinishEvent))
        if isinstance(events, Generator):
            events.close()  # stops before the write-back: a cold method's chunks stay cold
        ttfts.append(final.ttft_ms)
    cached = final.extra_usage.get("cached_tokens", 0)
    recomputed = final.extra_usage.get("recomputed_tokens", 0)
    return {
        "text": final.text,
        "engine_ttft_ms": min(ttfts),
        "prompt_tokens": final.prompt_tokens,
        "cached_tokens": cached,
        "recomputed_tokens": recomputed,
        "prefilled_tokens": final.prompt_tokens - cached + recomputed,
    }


def run_one(
    engine: TorchEngine,
    ex: Example,
    method: str,
    budget_ms: float,
    models: dict[str, CostModel],
    args: Any,
    salt: str,
) -> dict[str, Any]:
    aware = method.endswith("-aware")
    cands = (
        ex.cands
        if aware
        else [Candidate(c.id, c.text, c.n_tokens, False, c.token_ids, c.vector) for c in ex.cands]
    )
    cfg = SelectionConfig(
        method="topk" if method.startswith("topk") else "corag", budget=budget_ms, budget_unit="ms"
    )
    sel = select_chunks(ex.question, cands, args.scorer, models["warm" if aware else "cold"], cfg)
    got = answer(engine, ex, sel.indices, args.max_tokens, "" if aware else salt, args.repeats)
    ttft = got.pop("engine_ttft_ms") + sel.search_ms
    return {
        "f1": best_f1(got.pop("text"), ex.answers),
        # nan when retrieval missed the gold paragraph: no selection could recall it
        "recall": len(ex.gold & set(sel.indices)) / len(ex.gold) if ex.gold else float("nan"),
        "chunks": len(sel.indices),
        **got,
        "search_ms": sel.search_ms,
        "ttft_ms": ttft,
        "search_share": sel.search_ms / ttft,
    }


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--squad", type=int, default=30)
    p.add_argument("--musique", type=int, default=0)
    p.add_argument("--squad-budgets", default="300", help="prefill tokens of cold chunks (~150 a paragraph)")
    p.add_argument("--musique-budgets", default="1200", help="prefill tokens of cold chunks (~600 a passage)")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2, help="answers per selection; TTFT is the fastest")
    p.add_argument("--memory-gib", type=int, default=6, help="in-process chunk-cache tier")
    p.add_argument("--distraction", type=float, default=None, help="the embedding scorer's; default its own")
    p.add_argument("--dev", action="store_true", help="the disjoint tuning slice of questions")
    p.add_argument("--name", default="selection", help="result files bench/results/<name>.*")
    datasets.add_data_option(p)
    args = p.parse_args()
    needed = [datasets.SQUAD] * (args.squad > 0) + [datasets.MUSIQUE] * (args.musique > 0)
    datasets.use_data(args.data, *needed)
    return args


def main() -> None:
    args = parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    # Room for every candidate's cache (a float32 MuSiQue passage takes ~28 MB): with the default
    # 2 GiB tier the first-warmed caches were evicted before their questions came.
    store = TieredStore(StoreConfig(memory_bytes=args.memory_gib << 30))
    cfg = EngineConfig(Settings().model_dir(), dtype="float32", num_threads=args.threads, max_batch_size=0)
    engine = TorchEngine(cfg, store)
    embedder = QueryMemo()
    args.scorer = (
        EmbeddingScorer(embedder)
        if args.distraction is None
        else EmbeddingScorer(embedder, distraction=args.distraction)
    )
    examples = squad(args.squad, engine, embedder, args.dev) + musique(
        args.musique, engine, embedder, args.dev
    )
    speed = measure_prefill_speed(engine.model, 256, 1024, rounds=2)
    opts = BlendOptions()
    share = (opts.check_layer + 1) / engine.model_config.num_layers if opts.mode == "cacheblend" else 0.0
    models = {
        "cold": CostModel("full", tokens_per_s=speed.tokens_per_s, pair_s=speed.pair_s),
        "warm": CostModel(opts.mode, opts.ratio, share, speed.tokens_per_s, speed.pair_s),
    }
    methods = [m for m in args.methods.split(",") if m]
    if unknown := set(methods) - set(METHODS):
        raise SystemExit(f"--methods: unknown {sorted(unknown)}; choose from {METHODS}")
    meta: dict[str, Any] = {
        "machine": machine(), "tokens_per_s": speed.tokens_per_s, "pair_s": speed.pair_s,
        "mode": opts.mode, "ratio": opts.ratio,
        "config": SelectionConfig().model_dump(), "distraction": args.scorer.distraction,
        "max_tokens": args.max_tokens, "repeats": args.repeats, "dev": args.dev, "methods": methods,
        "warm_s": 0.0,
    }  # fmt: skip
    records: list[dict[str, Any]] = []
    for k, ex in enumerate(examples):
        report = warm_chunks(engine.blender, engine.build_prompt, [c.text for c in ex.cands])
        meta["warm_s"] += report.seconds
        # the rows around the documents: their attention to the chunks counts in a chunk's cost
        pieces = engine.build_prompt(ex.question, [], None).pieces
        shape = {kind: sum(len(p.ids) for p in pieces if p.kind == kind) for kind in ("prefix", "query")}
        ex_models = {
            name: replace(m, prefix_tokens=shape["prefix"], query_tokens=shape["query"])
            for name, m in models.items()
        }
        for budget in (
            int(b) for b in (args.squad_budgets if ex.dataset == "squad" else args.musique_budgets).split(",")
        ):
            # B cold tokens in one chunk, as estimated milliseconds (attention included)
            budget_ms = ex_models["cold"].costs([Candidate("budget", "", budget)], "ms").of([0])
            for method in methods:
                got = run_one(engine, ex, method, budget_ms, ex_models, args, f"cold-{k}-{budget}-{method}")
                records.append({"dataset": ex.dataset, "example": k, "budget_tokens": budget,
                                "budget_ms": budget_ms, "method": method, **got})  # fmt: skip
        done = {d: len({r["example"] for r in records if r["dataset"] == d}) for d in ("squad", "musique")}
        meta.update(examples=done, wall_s=time.perf_counter() - started)
        rows = summarise(records)
        write_results(args.name, {"meta": meta, "rows": rows, "records": records}, table(rows, meta))
        print(f"[{k + 1}/{len(examples)}] {ex.dataset} {time.perf_counter() - started:.0f} s", flush=True)
    rows = summarise(records)
    plot(rows, RESULTS / f"{args.name}.png")
    print(table(rows, meta))


if __name__ == "__main__":
    main()
