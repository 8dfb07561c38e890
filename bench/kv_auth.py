"""What authenticating (and encrypting) chunk-cache entries costs on the read path (cache/entry_auth.py).

Entries the size of one SmolLM2-135M chunk (30 layers, 3 KV heads, head dim 64, bf16) are read back
with and without the tag check, in one run, the two variants interleaved per repetition:

- decode: one whole entry from bytes (`cache.codec.decode`), as the disk tier does after its mmap;
- redis: a batch of entries through the Redis tier (a real redis-server on loopback), layer by layer
  (`get_many_layered`, where every layer's tags are checked before it is released) and whole.

Each read is measured three ways: checksums only (the baseline), with GMAC tags, and with tags and
the payload encrypted (AES-256-GCM, `RAGBLEND_KV_ENCRYPT`; encrypted entries are read whole, so the
"layered" read of an encrypted entry waits for the whole entry). Reports medians and the ratios to
the baseline. Writes bench/results/kv_auth.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench.common import RESULTS, command_line, git_commit, machine, write_results
from bench.kv_store import start_redis
from cache import CodecOptions, StoreConfig, TieredStore, chunk_key, decode, encode
from cache.entry import ChunkEntry, ChunkMeta
from cache.entry_auth import EntryAuth

SECRET = b"bench secret"
LAYERS, HEADS, DIM = 30, 3, 64


def entry(seed: int, tokens: int) -> ChunkEntry:
    gen = torch.Generator().manual_seed(seed)
    shape = (LAYERS, HEADS, tokens, DIM)
    meta = ChunkMeta(
        token_count=tokens, dtype="bfloat16", model_fingerprint="bench", prefix_id="p",
        num_layers=LAYERS, num_kv_heads=HEADS, head_dim=DIM,
    )  # fmt: skip
    k = torch.randn(shape, generator=gen).to(torch.bfloat16)
    v = torch.randn(shape, generator=gen).to(torch.bfloat16)
    return ChunkEntry(chunk_key("bench", "p", list(range(seed, seed + tokens)), "s", "bfloat16"), k, v, meta)


def median_ms(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def bench_decode(tokens: int, reps: int) -> dict[str, float]:
    e = entry(1, tokens)
    plain = encode(e)
    tagged = encode(e, CodecOptions(auth=EntryAuth(SECRET)))
    sealed = encode(e, CodecOptions(auth=EntryAuth(SECRET), encrypt=True))
    auth = EntryAuth(SECRET)
    off = on = enc = 0.0
    for _ in range(3):  # interleaved rounds
        off += median_ms(lambda: decode(plain), reps)
        on += median_ms(lambda: decode(tagged, auth=auth), reps)
        enc += median_ms(lambda: decode(sealed, auth=auth), reps)
    return {
        "tokens": tokens,
        "bytes": len(plain),
        "plain_ms": off / 3,
        "tagged_ms": on / 3,
        "sealed_ms": enc / 3,
    }


def bench_redis(url: str, tmp: Path, tokens: int, count: int, reps: int) -> dict[str, float]:
    entries = [entry(100 + i, tokens) for i in range(count)]
    keys = [x.key for x in entries]
    stores = {}
    for name, secret in (("plain", None), ("tagged", SECRET), ("sealed", SECRET)):
        cfg = StoreConfig(
            memory_bytes=0,
            redis_url=url,
            namespace=name,
            entry_secret=secret,
            disk_dir=None,
            encrypt_entries=name == "sealed",
            redis_timeout_s=10.0,  # a loaded machine must not turn reads into misses
        )
        store = TieredStore(cfg)
        store.put_many(entries)
        store.flush()
        stores[name] = store
    out: dict[str, float] = {"tokens": tokens, "entries": count}
    for name in stores:
        out[f"{name}_layered_ms"] = out[f"{name}_whole_ms"] = 0.0
    for _ in range(3):
        for name, store in stores.items():
            out[f"{name}_layered_ms"] += (
                median_ms(lambda s=store: s.get_many_layered(keys).entries(30), reps) / 3
            )
            out[f"{name}_whole_ms"] += median_ms(lambda s=store: s.tier("redis").get_many(keys), reps) / 3
    for store in stores.values():
        assert all(x is not None for x in store.tier("redis").get_many(keys))
        store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    decode_rows = [bench_decode(t, args.reps) for t in (200, 1000)]
    tmp = Path(tempfile.mkdtemp(prefix="kvauth-"))
    proc, port, _ = start_redis(str(tmp))
    try:
        redis_rows = [bench_redis(f"redis://127.0.0.1:{port}/0", tmp, 200, n, args.reps) for n in (1, 10)]
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    payload = {
        "command": command_line(),
        "commit": git_commit(),
        "machine": machine(),
        "decode": decode_rows,
        "redis": redis_rows,
    }
    lines = [
        "# Chunk-entry authentication on the read path",
        "",
        f"`{payload['command']}` at {payload['commit']}; {machine()['cpu_model']}, 1 torch thread; "
        f"medians of {args.reps} reads x 3 interleaved rounds. Entries of SmolLM2-135M's shape, bf16. "
        "The machine may be shared and loaded: compare the ratios (same run, interleaved), not the "
        "absolute times.",
        "",
        "| read | entry | checksums only | with tags | encrypted | tags / base | encrypted / base |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in decode_rows:
        p, t, s = r["plain_ms"], r["tagged_ms"], r["sealed_ms"]
        lines.append(
            f"| decode one entry | {r['tokens']} tokens, {r['bytes'] / 2**20:.1f} MiB | "
            f"{p:.2f} ms | {t:.2f} ms | {s:.2f} ms | {t / p:.2f}x | {s / p:.2f}x |"
        )
    for r in redis_rows:
        for kind in ("layered", "whole"):
            p, t, s = r[f"plain_{kind}_ms"], r[f"tagged_{kind}_ms"], r[f"sealed_{kind}_ms"]
            lines.append(
                f"| Redis, {kind} | {int(r['entries'])} x {int(r['tokens'])} tokens | {p:.2f} ms | "
                f"{t:.2f} ms | {s:.2f} ms | {t / p:.2f}x | {s / p:.2f}x |"
            )
    table = "\n".join(lines) + "\n"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_results("kv_auth", payload, table, args.out_dir)
    plot(payload, args.out_dir / "kv_auth.png")
    print(table)
    print(json.dumps(payload["machine"]))


def plot(payload: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, plain, tagged, sealed = [], [], [], []
    for r in payload["decode"]:
        labels.append(f"decode\n{r['tokens']} tok")
        plain.append(r["plain_ms"])
        tagged.append(r["tagged_ms"])
        sealed.append(r["sealed_ms"])
    for r in payload["redis"]:
        for kind in ("layered", "whole"):
            labels.append(f"redis {kind}\n{int(r['entries'])}x{int(r['tokens'])}")
            plain.append(r[f"plain_{kind}_ms"])
            tagged.append(r[f"tagged_{kind}_ms"])
            sealed.append(r[f"sealed_{kind}_ms"])
    xs = range(len(labels))
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.bar([x - 0.27 for x in xs], plain, 0.27, label="checksums only")
    ax.bar(list(xs), tagged, 0.27, label="checksums + GMAC tags")
    ax.bar([x + 0.27 for x in xs], sealed, 0.27, label="tags + AES-GCM encryption")
    ax.set_xticks(list(xs), labels, fontsize=8)
    ax.set_ylabel("ms (median)")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("Chunk-entry read path: checksums, authentication, encryption")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
