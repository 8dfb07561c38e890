"""Serving benchmark: the batched scheduler against one request at a time, over HTTP.

Two fresh local servers on the embedded model, one after the other, same workload:
- batched: continuous batching (engine/scheduler.py) with `--batch` sequences at most;
- one-at-a-time: `RAGBLEND_MAX_BATCH_SIZE=0`, the engine's unbatched path, one request after another.
Each is driven closed loop by 1, 4, 16 and 64 clients streaming /generate (`--per-client` requests
each, at least `--min-requests` and at most `--max-requests` a level, never fewer than the clients).
Requests are MuSiQue questions with `--passages` passages each, in the server's default blend mode,
on chunk caches warmed by asking every pool question once first (as after ingestion). Reported per
level: throughput (requests/s and generated tokens/s), TTFT and inter-token latency p50 / p90 / p99;
and per concurrency the batched / one-at-a-time throughput ratio and the batched p99 TTFT relative to
its concurrency-1 value.

Rerun (short answers, about 10 minutes on two cores; long answers, about 15):
    .venv/bin/python -m bench.serve
    .venv/bin/python -m bench.serve --max-tokens 128 --per-client 4 --name serve_long
Writes: bench/results/serve.{json,md,png}
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shlex
import sys
from pathlib import Path
from typing import Any

import httpx

from bench.common import RESULTS, git_commit, machine, write_results
from bench.load_client import RequestRecord, closed_loop, stream_generate
from bench.load_stats import Slo, summarize, without_nan
from bench.loadtest import floats, make_payloads, questions, settle
from bench.local_server import local_server
from bench.serve_report import markdown, plot

SCHEDULERS = ("batched", "one-at-a-time")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concurrency", type=floats, default=[1, 4, 16, 64])
    p.add_argument("--per-client", type=int, default=2, help="requests per client and level")
    p.add_argument("--min-requests", type=int, default=8, help="requests per level at least")
    p.add_argument(
        "--max-requests", type=int, default=64, help="requests per level at most (never below the clients)"
    )
    p.add_argument("--batch", type=int, default=16, help="max_batch_size of the batched server")
    p.add_argument("--passages", type=int, default=2)
    p.add_argument("--pool", type=int, default=16, help="distinct questions")
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--max-seconds", type=float, default=420.0, help="hard time limit of one level")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the servers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="serve")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    # make_payloads reads these loadtest options
    args.zipf, args.shuffle = 1.1, True
    return args


async def drive(base: str, scheduler: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    pool = questions(args.pool)
    url = f"{base}/generate"
    slo = Slo(ttft_ms=float("inf"), itl_ms=float("inf"))
    timeout = httpx.Timeout(args.max_seconds + 60, connect=10)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=128)
    levels = []
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        # every pool question once, passages in order: warm process and chunk caches
        for payload in make_payloads(pool, 0, "", random.Random(0), args, every=True):
            payload.pop("blend")  # the server's default mode
            rec = RequestRecord(index=-1)
            await stream_generate(client, url, payload, rec)
            if not rec.ok:
                raise SystemExit(f"warm-up request failed: {rec.error}")
        await settle(client, base)
        rng = random.Random(args.seed)
        for clients in (int(c) for c in args.concurrency):
            count = max(clients, min(args.max_requests, max(args.min_requests, clients * args.per_client)))
            payloads = make_payloads(pool, count, "", rng, args)
            for payload in payloads:
                payload.pop("blend")
            started = asyncio.get_running_loop().time()
            records = await closed_loop(client, url, payloads, clients, args.max_seconds)
            wall = asyncio.get_running_loop().time() - started
            summary = summarize(records, wall, slo)
            levels.append({"scheduler": scheduler, "clients": clients, "summary": summary})
            print(
                f"{scheduler} c={clients}: {summary['completed']}/{summary['sent']} ok, "
                f"{summary['output_token_throughput']:.1f} tok/s, "
                f"TTFT p50 {summary['ttft_ms']['p50']:.0f} p99 {summary['ttft_ms']['p99']:.0f} ms",
                flush=True,
            )
    return levels


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from server.settings import Settings

    args = parse_args(argv)
    levels: list[dict[str, Any]] = []
    for scheduler in SCHEDULERS:
        env = {
            "RAGBLEND_MODEL": str(Settings().model_dir()),
            "RAGBLEND_NUM_THREADS": str(args.threads),
            "RAGBLEND_MAX_BATCH_SIZE": str(args.batch if scheduler == "batched" else 0),
            "RAGBLEND_QUEUE_SIZE": str(int(max(args.concurrency)) + 8),
            "RAGBLEND_REQUEST_TIMEOUT_S": str(args.max_seconds + 60),
        }
        with local_server(env) as base:
            levels += asyncio.run(drive(base, scheduler, args))
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    payload = {
        "command": shlex.join(["python", "-m", "bench.serve", *(sys.argv[1:] if argv is None else argv)]),
        "config": config,
        "git": git_commit(),
        "machine": machine(),
        "levels": levels,
    }
    table = markdown(payload)
    write_results(args.name, without_nan(payload), table, args.out_dir)
    plot(payload, args.out_dir / f"{args.name}.png")
    print(table)
    return payload


if __name__ == "__main__":
    main()
