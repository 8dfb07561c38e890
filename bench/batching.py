"""Continuous batching against one request at a time, same engine, same run.

Closed loop: `c` clients (c = 1, 4, 8) each send `--per-client` requests one after another, through the
same path the server takes (an asyncio consumer of a Job's events). Prompts are MuSiQue questions with
one or two passages (about 150 to 350 tokens), greedy, `--max-tokens` new tokens each, in the server's
default blend mode (cacheblend, r = 0.15) with the passages' chunk caches stored beforehand, as they
are once documents have been seen (`--blend full` for plain prefills).
- one-at-a-time: the engine's unbatched path on the request queue's single worker (the old server);
- batched: the scheduler (engine/scheduler.py) with max_batch_size 8.
Reported per mode and concurrency: throughput (generated tokens/s over the wall time), TTFT and
inter-token latency (gaps between streamed tokens) p50 / p90 / p99. Then one torch.profiler pass over
the batched decode step at batch 8.

Rerun:  .venv/bin/python -m bench.batching        (about 3 minutes on two busy cores)
Writes: bench/results/batching.{json,md,png}
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from typing import Any

import torch

from bench import datasets
from bench.common import RESULTS, machine, write_results
from engine.batch_decode import decode_step
from engine.batch_kv import BatchKV
from engine.blend.options import BLEND_MODES, BlendOptions
from engine.config import EngineConfig
from engine.events import FinishEvent, TokenEvent
from engine.prompt import Prompt
from engine.request_queue import Job, RequestQueue
from engine.sampling import SamplingParams
from engine.torch_engine import TorchEngine
from server.settings import Settings

LEVELS = (1, 4, 8)


def prompts(engine: TorchEngine, n: int) -> list[Prompt]:
    examples = datasets.musique()
    out = []
    for i, ex in enumerate(examples[:n]):
        docs = [" ".join((c["title"] + ". " + c["text"]).split()[:120]) for c in ex["ctxs"][: 1 + i % 2]]
        out.append(engine.build_prompt(ex["question"], docs, None))
    return out


def pct(xs: list[float], q: float) -> float:
    return float(torch.tensor(xs).quantile(q)) if xs else 0.0


async def client(start: Any, todo: list[Prompt], params: SamplingParams, out: list[dict[str, Any]]) -> None:
    for prompt in todo:
        sent = time.perf_counter()
        job: Job = start(prompt, params)
        stamps, tokens = [], 0
        async for event in job.events():
            if isinstance(event, TokenEvent) and event.token_id >= 0:
                stamps.append(time.perf_counter())
            elif isinstance(event, FinishEvent):
                tokens = event.completion_tokens
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        out.append({"ttft": stamps[0] - sent if stamps else 0.0, "gaps": gaps, "tokens": tokens})


def run_level(
    start: Any, pool: list[Prompt], c: int, per_client: int, params: SamplingParams
) -> dict[str, Any]:
    results: list[dict[str, Any]] = []

    async def main() -> float:
        begin = time.perf_counter()
        todo = [[pool[(k * per_client + j) % len(pool)] for j in range(per_client)] for k in range(c)]
        await asyncio.gather(*(client(start, t, params, results) for t in todo))
        return time.perf_counter() - begin

    wall = asyncio.run(main())
    ttft = [r["ttft"] * 1000 for r in results]
    gaps = [g * 1000 for r in results for g in r["gaps"]]
    tokens = sum(r["tokens"] for r in results)
    row = {"concurrency": c, "requests": len(results), "tokens": tokens, "wall_s": wall}
    row["throughput_tok_s"] = tokens / wall
    for q in (0.5, 0.9, 0.99):
        row[f"ttft_p{round(q * 100)}_ms"] = pct(ttft, q)
        row[f"itl_p{round(q * 100)}_ms"] = pct(gaps, q)
    return row


def profile_decode(engine: TorchEngine, pool: list[Prompt], batch: int = 8, steps: int = 5) -> str:
    """torch.profiler over the batched decode step: the top operators by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    model = engine.model
    cache = BatchKV(model.cfg, model.dtype, batch)
    for prompt in pool[:batch]:
        kv = model.new_cache(len(prompt))
        model.forward(torch.tensor(prompt.ids), kv)
        cache.add(kv, len(prompt), len(prompt) + steps + 8)
    tokens = [1] * batch
    decode_step(model, cache, tokens)  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            decode_step(model, cache, tokens)
    return str(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def plot(rows: list[dict[str, Any]], path: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    for mode in ("one-at-a-time", "batched"):
        mine = [r for r in rows if r["mode"] == mode]
        xs = [r["concurrency"] for r in mine]
        axes[0].plot(xs, [r["throughput_tok_s"] for r in mine], marker="o", label=mode)
        axes[1].plot(xs, [r["ttft_p50_ms"] for r in mine], marker="o", label=f"{mode} p50")
        axes[1].plot(xs, [r["ttft_p90_ms"] for r in mine], marker="x", linestyle="--", label=f"{mode} p90")
        axes[2].plot(xs, [r["itl_p50_ms"] for r in mine], marker="o", label=f"{mode} p50")
        axes[2].plot(xs, [r["itl_p90_ms"] for r in mine], marker="x", linestyle="--", label=f"{mode} p90")
    for ax, title in zip(
        axes, ("throughput (tokens/s)", "TTFT (ms)", "inter-token latency (ms)"), strict=True
    ):
        ax.set_title(title)
        ax.set_xlabel("concurrent clients")
        ax.set_xticks(list(LEVELS))
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def table(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        f"Batching: {meta['per_client']} requests per client, {meta['max_tokens']} new tokens each, "
        f"blend mode {meta['blend']}, {meta['dtype']}, {meta['threads']} torch thread(s), prefill budget "
        f"{meta['prefill_chunk_tokens']} tokens per step.",
        "",
        "| mode | clients | req | tokens | tok/s | speed-up | TTFT p50/p90/p99 ms | ITL p50/p90/p99 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    base = {r["concurrency"]: r["throughput_tok_s"] for r in rows if r["mode"] == "one-at-a-time"}
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['concurrency']} | {r['requests']} | {r['tokens']} | "
            f"{r['throughput_tok_s']:.1f} | {r['throughput_tok_s'] / base[r['concurrency']]:.2f}x | "
            f"{r['ttft_p50_ms']:.0f} / {r['ttft_p90_ms']:.0f} / {r['ttft_p99_ms']:.0f} | "
            f"{r['itl_p50_ms']:.0f} / {r['itl_p90_ms']:.0f} / {r['itl_p99_ms']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--per-client", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float32"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the cores are shared)")
    parser.add_argument("--prefill-chunk-tokens", type=int, default=64)
    parser.add_argument("--blend", default="cacheblend", choices=BLEND_MODES)
    datasets.add_data_option(parser)
    args = parser.parse_args()
    datasets.use_data(args.data, datasets.MUSIQUE)
    cfg = EngineConfig(
        model_dir=Settings().model_dir(),
        dtype=args.dtype,
        num_threads=args.threads,
        max_batch_size=max(LEVELS),
        prefill_chunk_tokens=args.prefill_chunk_tokens,
    )
    engine = TorchEngine(cfg)
    pool = prompts(engine, 16)
    params = SamplingParams(max_tokens=args.max_tokens)
    blend = BlendOptions(mode=args.blend)
    for prompt in pool:  # store the passages' chunk caches (a no-op for `full`)
        list(engine.generate_unbatched(prompt, SamplingParams(max_tokens=1), blend=blend))
    serial = RequestQueue(max_waiting=64)

    def one_at_a_time(prompt: Prompt, p: SamplingParams) -> Job:
        return serial.submit(lambda cancel: engine.generate_unbatched(prompt, p, cancel, blend))

    def batched(prompt: Prompt, p: SamplingParams) -> Job:
        job = engine.submit_job(prompt, p, blend)
        assert job is not None
        return job

    rows = []
    for c in LEVELS:
        for mode, start in (("one-at-a-time", one_at_a_time), ("batched", batched)):
            row = {"mode": mode, **run_level(start, pool, c, args.per_client, params)}
            print(json.dumps(row))
            rows.append(row)
    serial.close()
    engine.close()
    rows.sort(key=lambda r: (r["mode"] != "one-at-a-time", r["concurrency"]))
    meta = {
        "machine": machine(),
        "dtype": engine.dtype_name,
        "threads": args.threads,
        "per_client": args.per_client,
        "max_tokens": args.max_tokens,
        "prefill_chunk_tokens": args.prefill_chunk_tokens,
        "blend": args.blend,
        "prompt_tokens": [len(p) for p in pool],
    }
    prof = profile_decode(engine, pool)
    text = (
        table(rows, meta)
        + "\nBatched decode step at batch 8 (torch.profiler, 5 steps):\n\n```\n"
        + prof
        + "```\n"
    )
    write_results("batching", {"meta": meta, "rows": rows, "decode_profile": prof}, text)
    plot(rows, RESULTS / "batching.png")
    print(text)


if __name__ == "__main__":
    main()
