"""Retrieval benchmark: chunkers x embeddings on SQuAD 2.0 (3 articles, one document per article).

Every answerable question is asked; a hit is a retrieved chunk that contains a gold answer string
(case-insensitive). For each chunker the chunks are embedded once; situated variants (chunk vector
plus a weighted context-window vector) are tuned on the even-numbered questions ("dev") and
reported on the odd ones ("test"), next to chunk-only vectors. Ingestion time per 1k document
tokens counts sentence splitting, chunking (the LM pass for ppl/margin) and embedding; the second
figure adds a stand-in for the chunk KV precompute that ingestion also runs (one forward pass of
[prompt prefix + chunk] per chunk, as the engine will do), since that is part of every ingestion.
Times are CPU seconds of the benchmark process (all its threads), not wall time: the machine is
shared, and CPU time is far less disturbed by other processes. Compare ratios within one run.

Rerun:  .venv/bin/python -m bench.retrieval          (full, ~30 min on 2 cores)
        .venv/bin/python -m bench.retrieval --quick  (first 10 paragraphs of one article)
Writes: bench/results/retrieval.{json,md,png}

With --modes it compares the retrieval modes instead (dense, keyword, hybrid on SQuAD and MuSiQue,
see bench/retrieval_modes.py), writing bench/results/retrieval_modes.{json,md,png}.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import datasets
from bench.common import RESULTS, machine, write_results
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
    "sentences+merge": ChunkerConfig(method="sentences", merge_target=200),
    "ppl": ChunkerConfig(method="ppl", theta=0.0, merge_target=None),
    "ppl+merge": ChunkerConfig(method="ppl", theta=0.0, merge_target=200),
    "margin+merge": ChunkerConfig(method="margin", merge_target=200),
}
SITUATED = [
    EmbeddingConfig(context_mode=mode, context_radius=r, context_weight=w)
    for mode, radii in (("mean", (1, 2, None)), ("text", (1,)))
    for r in radii
    for w in (0.1, 0.25, 0.5)
]
KS = (1, 3, 5)


def load_corpus(quick: bool, flatten: bool = False) -> tuple[list[str], list[dict[str, Any]]]:
    articles = datasets.squad()["data"]
    if quick:
        articles = [{**articles[0], "paragraphs": articles[0]["paragraphs"][:10]}]
    docs, questions = [], []
    for d, article in enumerate(articles):
        # --flatten hides the paragraph structure, leaving the chunker only the text itself
        docs.append((" " if flatten else "\n\n").join(p["context"] for p in article["paragraphs"]))
        for p in article["paragraphs"]:
            for qa in p["qas"]:
                if not qa["is_impossible"]:
                    answers = sorted({a["text"].lower() for a in qa["answers"]})
                    questions.append({"question": qa["question"], "answers": answers, "doc": d})
    return docs, questions


def chunk_corpus(cfg: ChunkerConfig, docs: list[str], lm: ChunkingLM, embedder: Embedder) -> dict[str, Any]:
    started = time.process_time()
    per_doc = []
    for text in docs:
        sentences, tokens = split_sentences(text), tokenize_document(lm.tokenizer, text)
        spans = chunk_spans(cfg, lm, text, sentences, tokens)
        assert stitch(spans, text) == text
        per_doc.append([s.text(text) for s in spans])
    chunk_s = time.process_time() - started
    started = time.process_time()
    vectors = [embedder.embed(texts) for texts in per_doc]
    embed_s = time.process_time() - started
    return {"texts": per_doc, "vectors": vectors, "chunk_s": chunk_s, "embed_s": embed_s}


def kv_precompute_s(engine: TorchEngine, per_doc: list[list[str]], rounds: int = 2) -> float:
    """What computing every chunk's cache costs: [BOS + system prefix] + chunk, one forward each.
    The best of `rounds`: the first pass over new input lengths also pays one-off kernel set-up."""
    prefix = list(engine.prompts.prefix(None, with_documents=True).ids)
    prompts = [torch.tensor(prefix + list(engine.prompts.document(t).ids)) for doc in per_doc for t in doc]
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for ids in prompts:
            engine.model.forward(ids, engine.model.new_cache(len(ids)))
        best = min(best, time.process_time() - started)
    return best


def warm_up(engine: TorchEngine) -> None:
    """First calls with new shapes pay one-off kernel set-up; keep that out of every timing."""
    ids = torch.randint(100, 1000, (600,))
    for n in (512, 300, 130, 100, 64):
        engine.model.forward(ids[:n], engine.model.new_cache(n), all_logits=n == 512)


def recalls(
    chunked: dict[str, Any], doc_vectors: list[np.ndarray], qvecs: np.ndarray, questions: list
) -> dict:
    """Per question: is a gold answer inside one of the top-k chunks, for each k in KS."""
    texts = [t.lower() for doc in chunked["texts"] for t in doc]
    order = np.argsort(-(qvecs @ np.concatenate(doc_vectors).T), axis=1)[:, : max(KS)]
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


def row_for(label: str, found: dict[str, np.ndarray], dev: np.ndarray, extra_s: float) -> dict[str, Any]:
    every = np.ones_like(dev)
    return {"embedding": label, "dev": summarise(found, dev), "test": summarise(found, ~dev),
            "all": summarise(found, every), "extra_s": extra_s}  # fmt: skip


def evaluate(chunked: dict, embedder: Embedder, qvecs: np.ndarray, questions: list) -> list[dict]:
    """Chunk-only vectors, and the situated setting that does best on the dev questions."""
    dev = np.arange(len(questions)) % 2 == 0
    rows = [row_for("chunk", recalls(chunked, chunked["vectors"], qvecs, questions), dev, 0.0)]
    best: tuple[tuple[float, ...], dict[str, Any]] | None = None
    for cfg in SITUATED:
        started = time.process_time()
        pairs = zip(chunked["texts"], chunked["vectors"], strict=True)
        vecs = [index_vectors(cfg, t, v, embedder.embed) for t, v in pairs]
        row = row_for(
            cfg.describe(), recalls(chunked, vecs, qvecs, questions), dev, time.process_time() - started
        )
        key = (row["dev"]["r@5"], row["dev"]["r@3"], row["dev"]["r@1"])
        if best is None or key > best[0]:
            best = (key, {**row, "config": cfg.model_dump()})
    assert best is not None
    return [*rows, best[1]]


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
    ax2.set_ylabel("ingestion CPU seconds per 1k tokens")
    ax2.legend()
    fig.suptitle("Retrieval on SQuAD 2.0 (3 articles as 3 documents)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def target_check(rows: list[dict]) -> str:
    """The stated goal: ppl + merging + situated vs fixed + chunk-only, recall@5 and time."""
    base = next((r for r in rows if r["chunker"] == "fixed" and r["embedding"] == "chunk"), None)
    best = next((r for r in rows if r["chunker"] == "ppl+merge" and r["embedding"] != "chunk"), None)
    if base is None or best is None:
        return ""
    gain = best["test"]["r@5"] - base["test"]["r@5"]
    return (f"Target check: ppl+merge+situated recall@5 {best['test']['r@5']:.3f} vs fixed+chunk "
            f"{base['test']['r@5']:.3f} ({gain:+.3f}); ingestion time {best['time_vs_fixed_kv']:.2f}x fixed "
            f"with the KV precompute, {best['time_vs_fixed']:.2f}x without.")  # fmt: skip


def table(rows: list[dict], meta: dict) -> str:
    structure = "paragraphs joined with a space (no structure)" if meta["flatten"] else "paragraphs kept"
    lines = [
        "# Retrieval: chunkers x embeddings, SQuAD 2.0 dev subset",
        "",
        f"{meta['documents']} documents ({structure}), {meta['tokens']} tokens, {meta['questions']} "
        f"answerable questions; situated settings tuned on {meta['dev']} dev questions, recall on the other "
        f"{meta['test']} (r@5 all: every question). Machine: {meta['machine']}, model dtype {meta['dtype']}. "
        "Times: CPU seconds of this process per 1k document tokens.",
        "",
        "| chunker | embedding | r@1 | r@3 | r@5 | r@5 all | chunks | mean tokens | mean chars "
        "| ingest CPU s/1k tok | vs fixed | + KV precompute | vs fixed (+KV) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        t = r["test"]
        lines.append(
            f"| {r['chunker']} | {r['embedding']} | {t['r@1']:.3f} | {t['r@3']:.3f} | {t['r@5']:.3f} "
            f"| {r['all']['r@5']:.3f} | {r['chunks']} | {r['mean_tokens']:.0f} | {r['mean_chars']:.0f} "
            f"| {r['ingest_s_per_1k']:.2f} | {r['time_vs_fixed']:.2f}x | {r['ingest_kv_s_per_1k']:.2f} "
            f"| {r['time_vs_fixed_kv']:.2f}x |"
        )
    chunkers = "; ".join(f"{name}: {cfg.describe()}" for name, cfg in CHUNKERS.items())
    return "\n".join([*lines, "", f"Chunkers: {chunkers}.", "", target_check(rows)]) + "\n"


def measure(name: str, engine: TorchEngine, embedder: Embedder, docs: list, qs: list, kv: bool) -> list:
    lm = ChunkingLM(engine)
    qvecs = embedder.embed([q["question"] for q in qs])
    n_tokens = sum(len(tokenize_document(lm.tokenizer, d)) for d in docs)
    chunked = chunk_corpus(CHUNKERS[name], docs, lm, embedder)
    kv_s = kv_precompute_s(engine, chunked["texts"]) if kv else 0.0
    flat = [t for doc in chunked["texts"] for t in doc]
    counts = [len(ids) for ids in lm.tokenizer(flat, add_special_tokens=False)["input_ids"]]
    rows = evaluate(chunked, embedder, qvecs, qs)
    for row in rows:
        seconds = chunked["chunk_s"] + chunked["embed_s"] + row["extra_s"]
        row.update(
            chunker=name,
            config_chunker=CHUNKERS[name].describe(),
            chunks=len(flat),
            mean_tokens=float(np.mean(counts)),
            mean_chars=float(np.mean([len(t) for t in flat])),
            chunk_s=chunked["chunk_s"],
            embed_s=chunked["embed_s"],
            kv_s=kv_s,
            ingest_s_per_1k=1000 * seconds / n_tokens,
            ingest_kv_s_per_1k=1000 * (seconds + kv_s) / n_tokens,
        )
    times = f"chunking {chunked['chunk_s']:.1f} s, embedding {chunked['embed_s']:.1f} s, KV {kv_s:.1f} s"
    found = "; ".join(f"{r['embedding']} {r['test']}" for r in rows)
    print(f"{name}: {len(flat)} chunks, {times}; {found}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10 paragraphs of one article")
    parser.add_argument("--flatten", action="store_true", help="join paragraphs with a space (no structure)")
    parser.add_argument("--no-kv", action="store_true", help="skip the KV precompute stand-in")
    parser.add_argument("--chunkers", default=",".join(CHUNKERS), help="comma-separated subset")
    # float32: on CPUs without AMX it beats bf16 here, and bf16 pays extra for each new input length
    parser.add_argument("--dtype", default="float32", choices=("auto", "bfloat16", "float32"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--modes", action="store_true", help="compare dense, keyword and hybrid retrieval")
    parser.add_argument("--musique-questions", type=int, default=75, help="with --modes: questions pooled")
    datasets.add_data_option(parser)
    args = parser.parse_args()
    if args.modes:
        from bench.retrieval_modes import run

        run(args)
        return
    datasets.use_data(args.data, datasets.SQUAD)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    engine = TorchEngine(EngineConfig(Settings().model_dir(), dtype=args.dtype, num_threads=args.threads))
    docs, questions = load_corpus(args.quick, args.flatten)
    embedder = Embedder()
    warm_up(engine)
    names = args.chunkers.split(",")
    rows = [r for name in names for r in measure(name, engine, embedder, docs, questions, not args.no_kv)]
    fixed = next((r for r in rows if r["chunker"] == "fixed"), rows[0])
    for row in rows:
        row["time_vs_fixed"] = row["ingest_s_per_1k"] / fixed["ingest_s_per_1k"]
        row["time_vs_fixed_kv"] = row["ingest_kv_s_per_1k"] / max(fixed["ingest_kv_s_per_1k"], 1e-9)
    meta = {"documents": len(docs), "tokens": sum(len(engine.tokenizer(d).input_ids) for d in docs),
            "questions": len(questions), "dev": (len(questions) + 1) // 2, "test": len(questions) // 2,
            "machine": machine(), "dtype": engine.dtype_name, "quick": args.quick, "flatten": args.flatten,
            "kv": not args.no_kv}  # fmt: skip
    suffix = ("-quick" if args.quick else "") + ("-flat" if args.flatten else "")
    text = table(rows, meta)
    write_results(f"retrieval{suffix}", {"meta": meta, "rows": rows}, text)
    plot(rows, RESULTS / f"retrieval{suffix}.png")
    print(text)


if __name__ == "__main__":
    main()
