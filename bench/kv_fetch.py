"""kv_fetch_ms inside blended requests, with chunk caches served by one tier at a time.

Six MuSiQue passages per prompt (about 3,700 tokens, 6 entries of ~600 tokens). Each tier is measured
alone (memory; Redis on loopback with the memory tier off; local disk, warm page cache, memory off):
the prompt's caches are stored, then the same prompt is prefilled in modes cachecraft and cacheblend.
Reported: median kv_fetch_ms, median TTFT and their ratio (target: fetch <= 10% of TTFT).

Rerun:  .venv/bin/python -m bench.kv_fetch        (needs redis-server on PATH; starts its own)
Writes: bench/results/kv_fetch.{json,md,png}
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from bench import datasets
from bench.common import RESULTS, machine, write_results
from bench.kv_store import start_redis
from cache.config import StoreConfig
from cache.tiered import TieredStore
from engine.blend.options import BlendOptions
from engine.config import EngineConfig
from engine.torch_engine import TorchEngine
from server.settings import Settings

MODES = {"cachecraft": BlendOptions(mode="cachecraft"), "cacheblend r=0.15": BlendOptions(mode="cacheblend")}


def measure(engine: TorchEngine, store: TieredStore, prompts: list, tier: str, rounds: int) -> list[dict]:
    rows = []
    for name, opts in MODES.items():
        fetch, ttft = [], []
        for i, prompt in enumerate(prompts):
            salt = f"{tier}-{i}"
            warm = BlendOptions(mode="reuse")
            engine.blender.write_back(
                prompt, engine.blender.prefill(prompt, warm, len(prompt) + 1, salt), warm, salt
            )
            store.flush()
            for _ in range(rounds):
                start = time.perf_counter()
                result = engine.blender.prefill(prompt, opts, len(prompt) + 1, salt)
                int(result.logits.argmax())
                ttft.append((time.perf_counter() - start) * 1000)
                fetch.append(result.kv_fetch_ms)
                assert result.cached_tokens > 0.9 * len(prompt), f"{tier}: caches were not found"
        f, t = statistics.median(fetch), statistics.median(ttft)
        rows.append({"tier": tier, "mode": name, "kv_fetch_ms": f, "ttft_ms": t, "fetch_share": f / t})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    datasets.add_data_option(parser)
    args = parser.parse_args()
    datasets.use_data(args.data, datasets.MUSIQUE)
    settings = Settings()
    model_dir = settings.model_dir()
    dtype = settings.engine_config().dtype  # the server's remembered choice, not a fresh probe
    examples = datasets.musique()[: args.examples]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        proc, port, _ = start_redis(tmp)
        try:
            configs = {
                "memory": StoreConfig(memory_bytes=4 << 30),
                "redis": StoreConfig(memory_bytes=0, redis_url=f"redis://127.0.0.1:{port}/0"),
                "disk": StoreConfig(memory_bytes=0, disk_dir=f"{tmp}/kv"),
            }
            for tier, cfg in configs.items():
                store = TieredStore(cfg)
                engine = TorchEngine(
                    EngineConfig(model_dir=model_dir, dtype=dtype, num_threads=args.threads), store
                )
                prompts = [
                    engine.build_prompt(
                        ex["question"], [f"{c['title']}\n{c['text']}" for c in ex["ctxs"][:6]], None
                    )
                    for ex in examples
                ]
                rows += measure(engine, store, prompts, tier, args.rounds)
                store.close()
                print(rows[-2:], flush=True)
        finally:
            proc.terminate()
    lines = [
        "# kv_fetch_ms inside blended requests (6 MuSiQue passages, ~3,700 tokens)",
        "",
        f"{args.examples} prompts x {args.rounds} rounds, medians; dtype {dtype}; machine {machine()}.",
        "",
        "| tier | mode | kv_fetch_ms | TTFT ms | fetch / TTFT |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r['tier']} | {r['mode']} | {r['kv_fetch_ms']:.1f} | {r['ttft_ms']:.0f} "
        f"| {r['fetch_share']:.1%} |"
        for r in rows
    ]
    write_results("kv_fetch", {"machine": machine(), "rows": rows}, "\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    labels = [f"{r['tier']}\n{r['mode']}" for r in rows]
    ax.bar(labels, [r["ttft_ms"] - r["kv_fetch_ms"] for r in rows], label="compute")
    ax.bar(
        labels,
        [r["kv_fetch_ms"] for r in rows],
        bottom=[r["ttft_ms"] - r["kv_fetch_ms"] for r in rows],
        label="kv fetch",
    )
    ax.set_ylabel("TTFT ms (median)")
    ax.legend()
    ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "kv_fetch.png", dpi=120)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
