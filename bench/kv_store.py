"""Benchmark of the chunk-KV store (``cache/``): tiers, codecs, layer-wise fetch, eviction.

Rerun from the repository root (needs ``redis-server`` on PATH; starts its own on a free
port and removes it afterwards)::

    .venv/bin/python bench/kv_store.py            # full run, a few minutes
    .venv/bin/python bench/kv_store.py --quick    # fewer repetitions and sizes

Writes bench/results/kv_store.json, kv_store.md (tables) and kv_store.png (plots).
Entries have SmolLM2-135M's shape (30 layers, 3 KV heads, head_dim 64, bf16) with random
values. Times are medians over repetitions, torch on one thread; "GB/s" is raw K+V bytes
(not encoded bytes) per second. "get" includes checksum verification and decode,
"transfer" (Redis) is the bytes only. Cold disk reads drop each file from the page cache
with posix_fadvise(DONTNEED) after a sync before every read. The layer-wise section times
TieredStore.get_many_layered against get_many. The SQuAD section replays
the SQuAD 2.0 dev subset (`--data`) through the memory tier (LRU vs Cache-Craft).
The machine is shared and noisy: compare numbers of one run, not across runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import redis
import torch

from bench import datasets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cache import StoreConfig, TieredStore
from cache.codec import CodecOptions, decode, encode
from cache.disk_tier import DiskTier
from cache.entry import ChunkEntry, ChunkMeta
from cache.eviction import CraftPolicy, LRUPolicy
from cache.keys import chunk_key
from cache.memory_tier import MemoryTier
from cache.quant import relative_error
from cache.redis_tier import RedisTier
from cache.replay import replay

LAYERS, HEADS, DIM = 30, 3, 64
ENGINE_MS_PER_LAYER = 2.0
RESULTS = Path(__file__).resolve().parent / "results"
_STOP = frozenset(
    (
        "the",
        "a",
        "an",
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "and",
        "or",
        "is",
        "was",
        "were",
        "are",
        "be",
        "by",
        "with",
        "as",
        "from",
        "that",
        "this",
        "which",
        "who",
        "what",
        "when",
        "where",
        "how",
        "why",
        "did",
        "does",
        "do",
        "its",
        "it",
        "his",
        "her",
        "their",
    )
)


def start_redis(workdir: str) -> tuple[subprocess.Popen[bytes], int, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server not found: apt-get install redis-server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    sock = os.path.join(workdir, "redis.sock")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--unixsocket",
            sock,
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, socket_timeout=1)
    for _ in range(200):
        with contextlib.suppress(redis.RedisError):
            if client.ping():
                return proc, port, sock
        time.sleep(0.05)
    proc.kill()
    sys.exit("redis-server did not start")


def make_entries(n: int, tokens: int, seed: int, outliers: bool = False) -> list[ChunkEntry]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        shape = (LAYERS, HEADS, tokens, DIM)
        k, v = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
        if outliers:  # real K has a few large channels per head; per-token absmax suffers
            k = k * torch.exp(1.5 * torch.randn((LAYERS, HEADS, 1, DIM), generator=gen))
        meta = ChunkMeta(tokens, "bfloat16", "smollm2-135m", "sys", LAYERS, HEADS, DIM)
        key = chunk_key("smollm2-135m", "sys", [seed, i, tokens], "bench", "bfloat16")
        out.append(ChunkEntry(key, k.bfloat16(), v.bfloat16(), meta))
    return out


def median_s(fn: Callable[[], object], reps: int, before: Callable[[], object] | None = None) -> float:
    fn()  # warm-up (connections, allocator)
    times = []
    for _ in range(reps):
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def drop_page_cache(directory: str) -> None:
    os.sync()
    for root, _, files in os.walk(directory):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)


def bench_tiers(
    reps: int, sizes: list[int], batches: list[int], port: int, sock: str, tmp: str
) -> list[dict]:
    rows: list[dict] = []

    def row(tier: str, op: str, tokens: int, batch: int, seconds: float, raw: int) -> None:
        rows.append(
            {
                "tier": tier,
                "op": op,
                "tokens": tokens,
                "batch": batch,
                "ms": round(seconds * 1e3, 3),
                "GBps": round(raw / seconds / 1e9, 3),
            }
        )
        print(
            f"  {tier:<11} {op:<12} {tokens:>4} tok x{batch:<3} {seconds * 1e3:8.2f} ms "
            f"{raw / seconds / 1e9:6.2f} GB/s",
            flush=True,
        )

    for tokens in sizes:
        for batch in batches:
            entries = make_entries(batch, tokens, seed=tokens * 100 + batch)
            keys = [e.key for e in entries]
            raw = sum(e.nbytes for e in entries)
            mem = MemoryTier(1 << 34)
            row("memory", "put", tokens, batch, median_s(partial(mem.put_many, entries), reps), raw)
            row("memory", "get", tokens, batch, median_s(partial(mem.get_many, keys), reps), raw)
            for name, url in (("redis-tcp", f"redis://127.0.0.1:{port}"), ("redis-unix", f"unix://{sock}")):
                red = RedisTier(url, timeout_s=10.0)
                row(name, "put", tokens, batch, median_s(partial(red.put_many, entries), reps), raw)
                row(name, "get", tokens, batch, median_s(partial(red.get_many, keys), reps), raw)
                row(name, "transfer", tokens, batch, median_s(partial(red.read_blobs, keys), reps), raw)
                assert all(x is not None for x in red.get_many(keys))
                red.close()
            disk_dir = tempfile.mkdtemp(dir=tmp)
            disk = DiskTier(disk_dir, 1 << 34)
            row("disk", "put", tokens, batch, median_s(partial(disk.put_many, entries), reps), raw)
            row("disk", "get-warm", tokens, batch, median_s(partial(disk.get_many, keys), reps), raw)
            cold = median_s(partial(disk.get_many, keys), reps, before=partial(drop_page_cache, disk_dir))
            row("disk", "get-cold", tokens, batch, cold, raw)
            shutil.rmtree(disk_dir)
    return rows


def bench_codecs(reps: int) -> list[dict]:
    rows = []
    variants = [(c, q) for q in (False, True) for c in ("none", "lz4", "zstd")]
    for outliers in (False, True):
        entry = make_entries(1, 256, seed=7, outliers=outliers)[0]
        for compression, quantize in variants:
            opts = CodecOptions(compression, quantize)  # type: ignore[arg-type]
            blob = encode(entry, opts)
            out = decode(blob)
            enc = median_s(partial(encode, entry, opts), reps)
            dec = median_s(partial(decode, blob), reps)
            rows.append(
                {
                    "data": "outlier-K" if outliers else "gaussian",
                    "codec": ("int8+" if quantize else "") + compression,
                    "ratio": round(len(blob) / entry.nbytes, 4),
                    "encode_ms": round(enc * 1e3, 2),
                    "decode_ms": round(dec * 1e3, 2),
                    "decode_GBps": round(entry.nbytes / dec / 1e9, 2),
                    "rel_err_k": round(relative_error(entry.k, out.k), 5),
                    "rel_err_v": round(relative_error(entry.v, out.v), 5),
                }
            )
            print("  codec", rows[-1], flush=True)
    return rows


def bench_layerwise(reps: int, port: int) -> dict:
    """Whole entries vs layer-by-layer delivery from Redis (memory tier off), alone and
    with a simulated engine spending ``ENGINE_MS_PER_LAYER`` on each layer."""
    entries = make_entries(6, 256, seed=11)
    keys = [e.key for e in entries]
    config = StoreConfig(memory_bytes=0, redis_url=f"redis://127.0.0.1:{port}", redis_timeout_s=10.0)
    store = TieredStore(config)
    store.put_many(entries)
    store.flush()
    work = ENGINE_MS_PER_LAYER / 1e3
    first: list[float] = []

    def layered(engine: bool) -> None:
        start = time.perf_counter()
        handle = store.get_many_layered(keys)
        for layer in range(LAYERS):
            got = handle.layer(layer)
            assert all(x is not None for x in got)
            if layer == 0 and not engine:
                first.append(time.perf_counter() - start)
            if engine:
                time.sleep(work)

    def whole(engine: bool) -> None:
        got = store.get_many(keys)
        assert all(x is not None for x in got)
        for _ in range(LAYERS if engine else 0):
            time.sleep(work)

    result = {
        "entries": 6,
        "tokens": 256,
        "engine_ms_per_layer": ENGINE_MS_PER_LAYER,
        "whole_ms": round(median_s(partial(whole, False), reps) * 1e3, 2),
        "layered_all_ms": round(median_s(partial(layered, False), reps) * 1e3, 2),
        "layered_first_ms": round(statistics.median(first) * 1e3, 2),
        "whole_then_engine_ms": round(median_s(partial(whole, True), reps) * 1e3, 2),
        "layered_with_engine_ms": round(median_s(partial(layered, True), reps) * 1e3, 2),
    }
    print("  layer-wise", result, flush=True)
    store.close()
    return result


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOP}


def squad_requests(path: Path) -> tuple[list[list[tuple[str, int]]], int]:
    """One request per question: its gold paragraph plus the 4 other paragraphs of the same
    article sharing the most (non-stop) words with the question (ties: lower index)."""
    requests = []
    total = 0
    for a, article in enumerate(json.loads(path.read_text())["data"]):
        paras = article["paragraphs"]
        bags = [_words(p["context"]) for p in paras]
        chunks = [
            (chunk_key("smollm2-135m", "sys", [a, j], "bench", "bfloat16"), max(1, len(p["context"]) // 4))
            for j, p in enumerate(paras)
        ]
        total += sum(n for _, n in chunks)
        for j, para in enumerate(paras):
            for qa in para["qas"]:
                q = _words(qa["question"])
                overlap = [(-len(q & bags[i]), i) for i in range(len(paras)) if i != j]
                others = [i for _, i in sorted(overlap)]
                requests.append([chunks[j]] + [chunks[i] for i in others[:4]])
    return requests, total


def squad_replay(path: Path) -> list[dict]:
    requests, total = squad_requests(path)
    budget = total // 4
    shuffled = list(requests)
    random.Random(0).shuffle(shuffled)
    rows = []
    policies: list[tuple[str, Callable[[], Any], int]] = [
        ("lru", LRUPolicy, budget),
        ("craft", CraftPolicy, budget),
        ("craft x1", lambda: CraftPolicy(turnovers=1.0), budget),
        ("craft x4", lambda: CraftPolicy(turnovers=4.0), budget),
        ("craft hl=2000", lambda: CraftPolicy(half_life=2000.0), budget),
        ("infinite", LRUPolicy, total),
    ]
    for order, reqs in (("dataset", requests), ("shuffled", shuffled)):
        for name, make, cap in policies:
            r = replay(reqs, cap, make())
            rows.append(
                {
                    "order": order,
                    "policy": name,
                    "hit_rate": round(r.hit_rate, 4),
                    "recomputed_tokens": r.recomputed_tokens,
                    "total_tokens": r.total_tokens,
                    "lookups": r.lookups,
                    "evictions": r.evictions,
                    "budget_tokens": cap,
                }
            )
            print("  squad", rows[-1], flush=True)
    return rows


def write_markdown(res: dict[str, Any], path: Path) -> None:
    lines = [
        "# Chunk-KV store benchmark",
        "",
        f"{res['meta']}",
        "",
        "## Tiers (median per batched call)",
        "",
        "| tier | op | tokens | batch | ms | GB/s |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r['tier']} | {r['op']} | {r['tokens']} | {r['batch']} | {r['ms']} | {r['GBps']} |"
        for r in res["tiers"]
    ]
    lines += [
        "",
        "## Codecs (one 256-token entry, 5.9 MB raw)",
        "",
        "| data | codec | size ratio | encode ms | decode ms | decode GB/s | rel err K | rel err V |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r['data']} | {r['codec']} | {r['ratio']} | {r['encode_ms']} | {r['decode_ms']} | "
        f"{r['decode_GBps']} | {r['rel_err_k']} | {r['rel_err_v']} |"
        for r in res["codecs"]
    ]
    lw = res["layerwise"]
    lines += [
        "",
        "## Layer-wise fetch (6 x 256-token entries, Redis TCP, memory tier off)",
        "",
        f"get_many: {lw['whole_ms']} ms. get_many_layered: layer 0 of all entries after "
        f"{lw['layered_first_ms']} ms, all layers after {lw['layered_all_ms']} ms. With a simulated engine "
        f"spending {lw['engine_ms_per_layer']} ms per layer: fetch then compute {lw['whole_then_engine_ms']} "
        f"ms, layered {lw['layered_with_engine_ms']} ms.",
        "",
        "## SQuAD eviction replay (memory tier, budget = 1/4 of all chunk bytes)",
        "",
        "| order | policy | hit rate | recomputed tokens | of all tokens |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r['order']} | {r['policy']} | {r['hit_rate']} | {r['recomputed_tokens']} | {r['total_tokens']} |"
        for r in res["squad"]
    ]
    path.write_text("\n".join(lines) + "\n")


def plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    gets = [r for r in res["tiers"] if r["op"] in ("get", "get-warm", "get-cold") and r["tokens"] == 256]
    for series in sorted({(r["tier"], r["op"]) for r in gets}):
        pts = [r for r in gets if (r["tier"], r["op"]) == series]
        axes[0].plot([r["batch"] for r in pts], [r["GBps"] for r in pts], marker="o", label=" ".join(series))
    axes[0].set(title="get throughput, 256-token entries", xlabel="batch (entries)", ylabel="GB/s (raw K+V)")
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=8)
    codecs = [r for r in res["codecs"] if r["data"] == "outlier-K"]
    axes[1].bar([r["codec"] for r in codecs], [r["ratio"] for r in codecs], color="tab:blue")
    axes[1].set(title="codec size ratio (outlier-K data)", ylabel="encoded / raw")
    ax2 = axes[1].twinx()
    ax2.plot([r["codec"] for r in codecs], [r["decode_GBps"] for r in codecs], "o-r")
    ax2.set_ylabel("decode GB/s", color="r")
    squad = [r for r in res["squad"] if r["policy"] in ("lru", "craft", "infinite")]
    labels = [f"{r['order']}\n{r['policy']}" for r in squad]
    axes[2].bar(labels, [r["recomputed_tokens"] for r in squad], color="tab:green")
    axes[2].set(title="SQuAD replay: recomputed tokens", ylabel="tokens")
    axes[2].tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, 256-token entries only")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for kv_store.{json,md,png}")
    datasets.add_data_option(parser)
    args = parser.parse_args()
    datasets.use_data(args.data, datasets.SQUAD)
    torch.set_num_threads(1)  # as in the background writer; stable on a shared machine
    load_start = os.getloadavg()[0]
    reps = 3 if args.quick else 9
    sizes = [256] if args.quick else [256, 512]
    tmp = tempfile.mkdtemp(prefix="kvbench-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None)
    proc, port, sock = start_redis(tmp)
    try:
        print("tiers", flush=True)
        tiers = bench_tiers(reps, sizes, [1, 6, 10], port, sock, tmp)
        print("codecs", flush=True)
        codecs = bench_codecs(reps)
        layerwise = bench_layerwise(reps, port)
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print("squad", flush=True)
    squad = squad_replay(datasets.data_path(datasets.SQUAD))
    res = {
        "meta": f"torch {torch.__version__}, {os.cpu_count()} CPUs, quick={args.quick}, reps={reps}, "
        f"entry shape {LAYERS}x{HEADS}xTx{DIM} bf16 (K and V), load average at start/end "
        f"{load_start:.1f}/{os.getloadavg()[0]:.1f} (other work shares these cores)",
        "tiers": tiers,
        "codecs": codecs,
        "layerwise": layerwise,
        "squad": squad,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "kv_store.json").write_text(json.dumps(res, indent=1))
    write_markdown(res, args.out / "kv_store.md")
    plot(res, args.out / "kv_store.png")
    print(f"wrote {args.out}/kv_store.json, .md, .png")


if __name__ == "__main__":
    main()
