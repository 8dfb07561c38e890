"""Retrieval benchmark: chunkers x embeddings on SQuAD 2.0 (3 articles, one document per article).

Every answerable question is asked; a hit is a retrieved chunk that contains a gold answer string
(case-insensitive). For each chunker the chunks are embedded once; situated variants (chunk vector
plus a weighted context-window vector) are tuned on the even-numbered questions ("dev") and
reported on the odd ones ("test"), next to chunk-only vectors. Ingestion time per 1k document
tokens counts sentence splitting, chunking (the LM pass for ppl/margin) and embedding; the second
figure adds a stand-in for the chunk KV precompute that ingestion also runs (one forward pass of
[prompt prefix + chunk] per chunk, as the engine will do), since that is part of every ingestion.
Timings come from one run on a shared machine: compare ratios within the run.

Rerun:  .venv/bin/python -m bench.retrieval          (full, ~20 min on 2 cores)
        .venv/bin/python -m bench.retrieval --quick  (first 10 paragraphs of one article)
Writes: bench/results/retrieval.{json,md,png}
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import DATA, RESULTS, machine, write_results
from engine.config import EngineConfig
from engine.torch_engine import TorchEngine
from retrieval.chunkers.factory import chunk_spans
from retrieval.config import ChunkerConfig, EmbeddingConfig
from retrieval.doc_tokens import tokenize_document
from retrieval.embedder import Embedder
from retrieval.lm import ChunkingLM
from retrieval.sentences import split_sentences
from retrieval.situated import index_vectors
from retrieval.spans import stitch
from server.settings import Settings

CHUNKERS = {
    "fixed": ChunkerConfig(method="fixed", size=128, overlap=16),
    "ppl": ChunkerConfig(method="ppl", theta=0.0, merge_target=None),
    "ppl+merge": ChunkerConfig(method="ppl", theta=0.0, merge_target=160),
    "margin+merge": ChunkerConfig(method="margin", merge_target=160),
}
SITUATED = [
    EmbeddingConfig(context_mode=mode, context_radius=r, context_weight=w)
    for mode, radii in (("mean", (1, 2, 4, None)), ("text", (1, 2)))
    for r in radii
    for w in (0.25, 0.5, 1.0)
]
KS = (1, 3, 5)


def load_corpus(quick: bool) -> tuple[list[str], list[dict[str, Any]]]:
    articles = json.loads((DATA / "squad_v2_dev_subset.json").read_text())["data"]
    if quick:
        articles = [{**articles[0], "paragraphs": articles[0]["paragraphs"][:10]}]
    docs, questions = [], []
    for d, article in enumerate(articles):
        docs.append("\n\n".join(p["context"] for p in article["paragraphs"]))
        for p in article["paragraphs"]:
            for qa in p["qas"]:
                if not qa["is_impossible"]:
                    answers = sorted({a["text"].lower() for a in qa["answers"]})
                    questions.append({"question": qa["question"], "answers": answers, "doc": d})
    return docs, questions


def chunk_corpus(cfg: ChunkerConfig, docs: list[str], lm: ChunkingLM, embedder: Embedder) -> dict[str, Any]:
    started = time.perf_counter()
    per_doc = []
    for text in docs:
        sentences, tokens = split_sentences(text), tokenize_document(lm.tokenizer, text)
        spans = chunk_spans(cfg, lm, text, sentences, tokens)
        assert stitch(spans, text) == text
        per_doc.append([s.text(text) for s in spans])
    chunk_s = time.perf_counter() - started
    started = time.perf_counter()
    vectors = [embedder.embed(texts) for texts in per_doc]
    embed_s = time.perf_counter() - started
    return {"texts": per_doc, "vectors": vectors, "chunk_s": chunk_s, "embed_s": embed_s}


def kv_precompute_s(engine: TorchEngine, per_doc: list[list[str]]) -> float:
    """What computing every chunk's cache costs: [BOS + system prefix] + chunk, one forward each."""
    prefix = list(engine.prompts.prefix(None, with_documents=True).ids)
    started = time.perf_counter()
    for texts in per_doc:
        for text in texts:
            ids = torch.tensor(prefix + list(engine.prompts.document(text).ids))
            engine.model.forward(ids, engine.model.new_cache(len(ids)))
    return time.perf_counter() - started


def warm_up(engine: TorchEngine) -> None:
    """First calls with new shapes pay one-off kernel set-up; keep that out of every timing."""
    ids = torch.randint(100, 1000, (600,))
    for n in (512, 300, 130, 100, 64):
        engine.model.forward(ids[:n], engine.model.new_cache(n), all_logits=n == 512)


def recalls(
    chunked: dict[str, Any], doc_vectors: list[np.ndarray], qvecs: np.ndarray, questions: list
) -> dict:
    texts = [t.lower() for doc in chunked["texts"] for t in doc]
    matrix = np.concatenate(doc_vectors)
    order = np.argsort(-(qvecs @ matrix.T), axis=1)[:, : max(KS)]
    hit = np.array(
        [
            [any(a in texts[c] for a in q["answers"]) for c in row]
            for q, row in zip(questions, order, strict=True)
        ]
    )
    first = np.where(hit.any(1), hit.argmax(1), max(KS))
    return {f"r@{k}": first < k for k in KS}


def summarise(found: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, float]:
    return {k: round(float(v[mask].mean()), 4) for k, v in found.items()}


def evaluate(name: str, chunked: dict, embedder: Embedder, qvecs: np.ndarray, questions: list) -> list[dict]:
    dev = np.arange(len(questions)) % 2 == 0
    rows, best = [], None
    plain = recalls(chunked, chunked["vectors"], qvecs, questions)
    rows.append({"embedding": "chunk", "dev": summarise(plain, dev), "test": summarise(plain, ~dev),
                 "all": summarise(plain, np.ones_like(dev)), "extra_s": 0.0})  # fmt: skip
    for cfg in SITUATED:
        started = time.perf_counter()
        vecs = [
            index_vectors(cfg, t, v, embedder.embed)
            for t, v in zip(chunked["texts"], chunked["vectors"], strict=True)
        ]
        extra = time.perf_counter() - started
        found = recalls(chunked, vecs, qvecs, questions)
        dev_score = summarise(found, dev)
        key = (dev_score["r@5"], dev_score["r@3"], dev_score["r@1"])
        if best is None or key > best[0]:
            best = (key, cfg, found, extra)
    assert best is not None
    _, cfg, found, extra = best
    rows.append({"embedding": cfg.describe(), "dev": summarise(found, dev), "test": summarise(found, ~dev),
                 "all": summarise(found, np.ones_like(dev)), "extra_s": extra, "config": cfg.model_dump()})  # fmt: skip  # noqa: E501
    for row in rows:
        row["chunker"] = name
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    names = list(dict.fromkeys(r["chunker"] for r in rows))
    x = np.arange(len(names))
    for i, kind in enumerate(("chunk", "situated")):
        vals = [next(r["test"]["r@5"] for r in rows if r["chunker"] == n and r["embedding"].startswith(kind))
                for n in names]  # fmt: skip
        ax1.bar(x + (i - 0.5) * 0.38, vals, 0.38, label=f"{kind} embedding")
    ax1.set_xticks(x, names)
    ax1.set_ylabel("recall@5 (test questions)")
    ax1.set_ylim(0, 1)
    ax1.legend()
    chunk_rows = [next(r for r in rows if r["chunker"] == n) for n in names]
    ax2.bar(x - 0.19, [r["ingest_s_per_1k"] for r in chunk_rows], 0.38, label="chunk + embed")
    ax2.bar(x + 0.19, [r["ingest_kv_s_per_1k"] for r in chunk_rows], 0.38, label="+ chunk KV precompute")
    ax2.set_xticks(x, names)
    ax2.set_ylabel("ingestion seconds per 1k tokens")
    ax2.legend()
    fig.suptitle("Retrieval on SQuAD 2.0 (3 articles as 3 documents)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def table(rows: list[dict], meta: dict) -> str:
    lines = [
        "# Retrieval: chunkers x embeddings, SQuAD 2.0 dev subset",
        "",
        f"{meta['documents']} documents, {meta['tokens']} tokens, {meta['questions']} answerable questions "
        f"(situated settings tuned on {meta['dev']} dev questions, recall reported on {meta['test']} test "
        f"questions). Machine: {meta['machine']}, model dtype {meta['dtype']}.",
        "",
        "| chunker | embedding | r@1 | r@3 | r@5 | r@5 all | chunks | mean tokens | mean chars "
        "| ingest s/1k tok | + KV precompute | vs fixed (+KV) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        t = r["test"]
        lines.append(
            f"| {r['chunker']} | {r['embedding']} | {t['r@1']:.3f} | {t['r@3']:.3f} | {t['r@5']:.3f} "
            f"| {r['all']['r@5']:.3f} | {r['chunks']} | {r['mean_tokens']:.0f} | {r['mean_chars']:.0f} "
            f"| {r['ingest_s_per_1k']:.2f} | {r['ingest_kv_s_per_1k']:.2f} | {r['time_vs_fixed']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10 paragraphs of one article")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="auto", choices=("auto", "bfloat16", "float32"))
    parser.add_argument("--chunkers", default=",".join(CHUNKERS), help="comma-separated subset")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    settings = Settings()
    engine = TorchEngine(EngineConfig(settings.model_dir(), dtype=args.dtype, num_threads=args.threads))
    lm, embedder = ChunkingLM(engine), Embedder()
    docs, questions = load_corpus(args.quick)
    n_tokens = sum(len(tokenize_document(lm.tokenizer, d)) for d in docs)
    qvecs = embedder.embed([q["question"] for q in questions])
    rows: list[dict] = []
    warm_up(engine)
    for name in args.chunkers.split(","):
        cfg = CHUNKERS[name]
        chunked = chunk_corpus(cfg, docs, lm, embedder)
        kv_s = kv_precompute_s(engine, chunked["texts"])
        flat = [t for doc in chunked["texts"] for t in doc]
        counts = [len(lm.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in flat]
        for row in evaluate(name, chunked, embedder, qvecs, questions):
            base = chunked["chunk_s"] + chunked["embed_s"] + row["extra_s"]
            row.update(chunks=len(flat), mean_tokens=float(np.mean(counts)),
                       mean_chars=float(np.mean([len(t) for t in flat])), chunk_s=chunked["chunk_s"],
                       embed_s=chunked["embed_s"], kv_s=kv_s, ingest_s_per_1k=1000 * base / n_tokens,
                       ingest_kv_s_per_1k=1000 * (base + kv_s) / n_tokens)  # fmt: skip
            rows.append(row)
        print(f"{name}: {len(flat)} chunks, chunk {chunked['chunk_s']:.1f}s embed {chunked['embed_s']:.1f}s "
              f"kv {kv_s:.1f}s; " + "; ".join(f"{r['embedding']} {r['test']}" for r in rows[-2:]), flush=True)  # fmt: skip  # noqa: E501
    fixed = next((r for r in rows if r["chunker"] == "fixed"), rows[0])
    for row in rows:
        row["time_vs_fixed"] = row["ingest_kv_s_per_1k"] / fixed["ingest_kv_s_per_1k"]
    meta = {"documents": len(docs), "tokens": n_tokens, "questions": len(questions),
            "dev": (len(questions) + 1) // 2, "test": len(questions) // 2, "machine": machine(),
            "dtype": engine.dtype_name, "quick": args.quick}  # fmt: skip
    text = table(rows, meta)
    suffix = "-quick" if args.quick else ""
    write_results(f"retrieval{suffix}", {"meta": meta, "rows": rows}, text)
    plot(rows, RESULTS / f"retrieval{suffix}.png")
    print(text)


if __name__ == "__main__":
    main()
