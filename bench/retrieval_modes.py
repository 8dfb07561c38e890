"""Retrieval modes benchmark: dense, keyword (BM25) and hybrid (reciprocal rank fusion) in one run,
on SQuAD 2.0 and MuSiQue, through the collection manager and the embedded store (SQLite FTS5 +
FAISS), exactly as /v1/retrieve runs them.

SQuAD: each article is one document (paragraphs kept); every answerable question is asked.
MuSiQue: the passages of the first questions are pooled into one collection (each passage one
document), so a question competes with every other question's passages; its questions are asked
over the whole pool. A hit is a retrieved chunk containing a gold answer string (case-insensitive);
recall@k is the share of questions with a hit in the top k. Documents are chunked with
sentences+merge (no LM pass: the modes, not the chunker, are compared; bench/retrieval.py compares
chunkers). Query times are wall-clock medians per question (embedding included for dense and hybrid).

Rerun:  .venv/bin/python -m bench.retrieval --modes           (~10 min on 2 cores)
        .venv/bin/python -m bench.retrieval --modes --quick   (1 article, 20 MuSiQue questions)
Writes: bench/results/retrieval_modes.{json,md,png}
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import datasets
from bench.common import RESULTS, machine, write_results
from engine.blend.options import GateConfig
from engine.config import EngineConfig
from engine.torch_engine import TorchEngine
from retrieval.collections import CollectionManager
from retrieval.config import ChunkerConfig, CollectionConfig, RetrievalMode
from retrieval.embedder import Embedder
from server.settings import Settings

MODES: tuple[RetrievalMode, ...] = ("dense", "keyword", "hybrid")
KS = (1, 5)
CONFIG = CollectionConfig(chunker=ChunkerConfig(method="sentences", merge_target=200, max_tokens=512))
BATCH = 64


def squad_corpus(quick: bool) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    articles = datasets.squad()["data"][: 1 if quick else None]
    docs, questions = [], []
    for article in articles:
        docs.append((article["title"], "\n\n".join(p["context"] for p in article["paragraphs"])))
        for p in article["paragraphs"]:
            for qa in p["qas"]:
                if not qa["is_impossible"]:
                    answers = sorted({a["text"].lower() for a in qa["answers"]})
                    questions.append({"question": qa["question"], "answers": answers})
    return docs, questions


def musique_corpus(n_questions: int) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    rows = datasets.musique()[:n_questions]
    seen: dict[str, str] = {}
    for row in rows:
        for ctx in row["ctxs"]:
            text = f"{ctx['title']}. {ctx['text']}" if ctx.get("title") else ctx["text"]
            seen.setdefault(text, f"passage-{len(seen)}")
    docs = [(name, text) for text, name in seen.items()]
    questions = [{"question": r["question"], "answers": [a.lower() for a in r["answers"]]} for r in rows]
    return docs, questions


def ingest(manager: CollectionManager, name: str, docs: list[tuple[str, str]]) -> float:
    manager.create(name, CONFIG)
    started = time.perf_counter()
    for first in range(0, len(docs), BATCH):
        job = manager.submit_documents(name, docs[first : first + BATCH])
        while (view := manager.job(job.job_id)).state not in ("succeeded", "failed"):
            time.sleep(0.05)
        if view.state != "succeeded":
            raise SystemExit(f"ingestion failed: {view.error}")
    return time.perf_counter() - started


def evaluate(manager: CollectionManager, name: str, questions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for mode in MODES:
        first_hit, times = [], []
        for q in questions:
            started = time.perf_counter()
            hits = manager.retrieve(name, q["question"], max(KS), mode=mode)
            times.append(time.perf_counter() - started)
            found = [any(a in h.text.lower() for a in q["answers"]) for h in hits]
            first_hit.append(found.index(True) if True in found else max(KS))
        ranks = np.array(first_hit)
        row = {"mode": mode, **{f"r@{k}": round(float((ranks < k).mean()), 4) for k in KS}}
        row["query_ms"] = round(1000 * statistics.median(times), 2)
        rows.append(row)
        print(f"{name} {mode}: {row}", flush=True)
    return rows


def winner(results: dict[str, list[dict[str, Any]]]) -> str:
    """The mode with the best recall@5 averaged over the data sets (then recall@1)."""

    def key(mode: str) -> tuple[float, float]:
        rows = [next(r for r in rs if r["mode"] == mode) for rs in results.values()]
        return (statistics.mean(r["r@5"] for r in rows), statistics.mean(r["r@1"] for r in rows))

    return max(MODES, key=key)


def table(results: dict[str, list[dict[str, Any]]], meta: dict[str, Any]) -> str:
    lines = [
        "# Retrieval modes: dense, keyword (BM25), hybrid (RRF)",
        "",
        f"{meta['corpora']}. Chunker {CONFIG.chunker.describe()}, embedder {meta['embedder']}, SQLite "
        f"FTS5 BM25 + FAISS flat, RRF k=60 over the best {meta['fusion_depth']} of each. Machine: "
        f"{meta['machine']['cpu_model']}, {meta['machine']['threads']} threads.",
        "",
        "| data | mode | r@1 | r@5 | median query ms |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for data, rows in results.items():
        for r in rows:
            lines.append(f"| {data} | {r['mode']} | {r['r@1']:.3f} | {r['r@5']:.3f} | {r['query_ms']:.1f} |")
    lines += ["", f"Best by mean recall@5 (then recall@1): **{meta['winner']}**."]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, list[dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.8), squeeze=False)
    for ax, (data, rows) in zip(axes[0], results.items(), strict=True):
        x = np.arange(len(KS))
        for i, r in enumerate(rows):
            ax.bar(x + (i - 1) * 0.27, [r[f"r@{k}"] for k in KS], 0.27, label=r["mode"])
        ax.set_xticks(x, [f"recall@{k}" for k in KS])
        ax.set_ylim(0, 1)
        ax.set_title(data)
        ax.legend()
    fig.suptitle("Retrieval modes (same chunks, same embedder)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def run(args: argparse.Namespace) -> None:
    datasets.use_data(args.data, datasets.SQUAD, datasets.MUSIQUE)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # the engine only tokenizes here (sentences chunker): no blend gate run at start-up
    config = EngineConfig(
        Settings().model_dir(), dtype="float32", num_threads=args.threads, blend_gate=GateConfig(False)
    )
    engine = TorchEngine(config)
    embedder = Embedder()
    corpora = {
        "squad": squad_corpus(args.quick),
        "musique": musique_corpus(20 if args.quick else args.musique_questions),
    }
    results: dict[str, list[dict[str, Any]]] = {}
    sizes = []
    with tempfile.TemporaryDirectory() as tmp:
        manager = CollectionManager(
            Path(tmp), lambda: engine, embedder_factory=lambda: embedder, job_poll_s=0.1
        )
        try:
            for name, (docs, questions) in corpora.items():
                seconds = ingest(manager, name, docs)
                info = manager.info(name)
                sizes.append(
                    f"{name}: {info.documents} documents, {info.chunks} chunks, {len(questions)} questions"
                )
                print(f"{sizes[-1]} (ingested in {seconds:.0f} s)", flush=True)
                results[name] = evaluate(manager, name, questions)
        finally:
            manager.close()
    from retrieval.collections import FUSION_DEPTH

    meta = {"corpora": "; ".join(sizes), "embedder": embedder.name, "machine": machine(),
            "fusion_depth": FUSION_DEPTH, "quick": args.quick, "winner": winner(results)}  # fmt: skip
    suffix = "-quick" if args.quick else ""
    text = table(results, meta)
    write_results(f"retrieval_modes{suffix}", {"meta": meta, "results": results}, text)
    plot(results, RESULTS / f"retrieval_modes{suffix}.png")
    print(text)
