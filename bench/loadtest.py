"""Load test of streamed /generate: Poisson arrivals at given rates, or a fixed number of clients.

Workload: MuSiQue questions, each with its Wikipedia passages sent as `documents`. Questions are
drawn from a pool with Zipf-skewed popularity, so popular passages recur and their chunk caches
are reused, and each request shuffles its passages (retrieval rarely returns the same order), which
is where blending and prefix reuse part ways. Each level measures TTFT, inter-token latency, TPOT
and end-to-end latency (p50 / p90 / p99), throughput, goodput under a TTFT/ITL SLO, errors, the
share of prompt tokens served from chunk caches, and per-tier KV hit rates from /metrics deltas.

Without --url it starts its own server on loopback (fresh caches for each blend mode); with --url
it drives that server, and the modes run one after another on its caches.

Rerun (small, about 5 min on two cores; add --prewarm for warm chunk caches):
    .venv/bin/python -m bench.loadtest
Any server:
    .venv/bin/python -m bench.loadtest --url http://host:8000 --rates 0.5,1,2,4 --concurrency 1,4,16 \\
        --requests 100 --max-tokens 64 --passages 6 --api-key $KEY
Writes: bench/results/<name>.{json,md,png}
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx

from bench import datasets
from bench.common import RESULTS, git_commit, machine, write_results
from bench.load_client import Payload, RequestRecord, closed_loop, open_loop, stream_generate
from bench.load_report import markdown, plot
from bench.load_stats import Slo, kv_counters, kv_hit_rates, summarize, without_nan
from bench.local_server import local_server


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="a running server (default: start one on loopback)")
    p.add_argument("--api-key", help="sent as a Bearer token")
    p.add_argument("--rates", type=floats, default=[0.1], help="open-loop levels, requests/s")
    p.add_argument("--concurrency", type=floats, default=[2], help="closed-loop levels, clients")
    p.add_argument("--requests", type=int, default=4, help="requests per level")
    p.add_argument("--max-seconds", type=float, default=90.0, help="hard time limit of one level")
    p.add_argument("--warmup", type=int, default=1, help="requests before measuring (own questions)")
    p.add_argument(
        "--prewarm", action="store_true", help="ask every pool question once first (a warm-cache run)"
    )
    p.add_argument("--modes", default="cacheblend,full", help="blend modes, comma separated")
    p.add_argument("--passages", type=int, default=2, help="passages per question (MuSiQue has 10)")
    p.add_argument("--pool", type=int, default=4, help="distinct questions to draw from")
    p.add_argument("--zipf", type=float, default=1.1, help="popularity skew of the questions")
    p.add_argument("--no-shuffle", dest="shuffle", action="store_false", help="keep passage order")
    p.add_argument("--max-tokens", type=int, default=8)
    p.add_argument("--slo-ttft-ms", type=float, default=3000.0)
    p.add_argument("--slo-itl-ms", type=float, default=500.0)
    p.add_argument("--threads", type=int, default=2, help="torch threads of the local server")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="loadtest", help="result file name")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    datasets.add_data_option(p)
    args = p.parse_args(argv)
    datasets.use_data(args.data, datasets.MUSIQUE)
    return args


def questions(count: int, offset: int = 0) -> list[dict[str, Any]]:
    examples = datasets.musique()
    if offset + count > len(examples):
        raise SystemExit(f"MuSiQue has {len(examples)} questions; {offset + count} needed")
    return list(examples[offset : offset + count])


def make_payloads(
    examples: list[dict[str, Any]], count: int, mode: str, rng: random.Random, args, every: bool = False
) -> list:
    """`count` requests over `examples`, popularity by Zipf rank, passages shuffled per request
    (`every`: each example once, in order)."""
    weights = [1 / (rank + 1) ** args.zipf for rank in range(len(examples))]
    out: list[Payload] = []
    for ex in examples if every else rng.choices(examples, weights=weights, k=count):
        docs = [f"{c['title']}\n{c['text']}" for c in ex["ctxs"][: args.passages]]
        if args.shuffle:
            rng.shuffle(docs)
        out.append(
            {
                "query": ex["question"],
                "documents": docs,
                "max_tokens": args.max_tokens,
                "blend": {"mode": mode},
            }
        )
    return out


async def scrape(client: httpx.AsyncClient, base: str) -> dict[str, float]:
    try:
        resp = await client.get(f"{base}/metrics")
        return kv_counters(resp.text) if resp.status_code == 200 else {}
    except httpx.HTTPError:
        return {}


async def settle(client: httpx.AsyncClient, base: str, timeout_s: float = 180) -> None:
    """Wait until the server stops writing chunk caches (its write counters hold for 3 s)."""
    deadline = time.monotonic() + timeout_s
    last, stable_since = None, time.monotonic()
    while time.monotonic() < deadline:
        writes = sum(v for k, v in (await scrape(client, base)).items() if k.startswith("writes/"))
        if writes != last:
            last, stable_since = writes, time.monotonic()
        elif time.monotonic() - stable_since >= 3:
            return
        await asyncio.sleep(0.5)


async def prewarm(client: httpx.AsyncClient, base: str, pool: list[dict[str, Any]], mode: str, args) -> None:
    """Every pool question once, in turn, passages in their original order; then let writes finish."""
    warm = argparse.Namespace(**{**vars(args), "shuffle": False})
    for payload in make_payloads(pool, 0, mode, random.Random(0), warm, every=True):
        rec = RequestRecord(index=-1)
        await stream_generate(client, f"{base}/generate", payload, rec)
        if not rec.ok:
            raise SystemExit(f"pre-warm request failed: {rec.error}")
    await settle(client, base)


async def run_mode(base: str, mode: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Warm up, then every open-loop and closed-loop level of one blend mode."""
    headers = {"authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    slo = Slo(args.slo_ttft_ms, args.slo_itl_ms)
    rng = random.Random(args.seed)
    pool = questions(args.pool)
    url = f"{base}/generate"
    levels: list[dict[str, Any]] = []
    timeout = httpx.Timeout(args.max_seconds + 30, connect=10)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=timeout, headers=headers, limits=limits) as client:
        # Warm-up questions lie outside the pool: they warm the process, not the measured caches.
        for payload in make_payloads(questions(args.warmup, args.pool), args.warmup, mode, rng, args):
            rec = RequestRecord(index=-1)
            await stream_generate(client, url, payload, rec)
            if not rec.ok:
                raise SystemExit(f"warm-up request failed: {rec.error}")
        if args.prewarm:
            await prewarm(client, base, pool, mode, args)
        plan = [("rate", r) for r in args.rates] + [("concurrency", c) for c in args.concurrency]
        for i, (kind, load) in enumerate(plan):
            payloads = make_payloads(pool, args.requests, mode, rng, args)
            before = await scrape(client, base)
            start = time.perf_counter()
            if kind == "rate":
                records = await open_loop(client, url, payloads, load, args.max_seconds, args.seed + i)
            else:
                records = await closed_loop(client, url, payloads, int(load), args.max_seconds)
            wall = time.perf_counter() - start
            after = await scrape(client, base)
            summary = summarize(records, wall, slo)
            levels.append(
                {
                    "mode": mode,
                    "kind": kind,
                    "load": load,
                    "summary": summary,
                    "kv_hit_rates": kv_hit_rates(before, after),
                    "records": [{**asdict(r), "tpot_ms": r.tpot_ms} for r in records],
                }
            )
            print(
                f"{mode} {kind}={load:g}: {summary['completed']}/{summary['sent']} ok, "
                f"TTFT p50 {summary['ttft_ms']['p50']:.0f} ms p99 {summary['ttft_ms']['p99']:.0f} ms, "
                f"E2E p99 {summary['e2e_ms']['p99']:.0f} ms, {summary['request_throughput']:.2f} req/s",
                flush=True,
            )
    return levels


@contextmanager
def local_target(args: argparse.Namespace) -> Iterator[str]:
    """A fresh local server (empty chunk stores) on the prepared embedded model."""
    from server.settings import Settings

    env = {"RAGBLEND_MODEL": str(Settings().model_dir()), "RAGBLEND_NUM_THREADS": str(args.threads)}
    with local_server(env) as base:
        yield base


def redacted(argv: list[str]) -> list[str]:
    """The command line as recorded in the results, without the API key."""
    out, hide = [], False
    for arg in argv:
        out.append("***" if hide else "--api-key=***" if arg.startswith("--api-key=") else arg)
        hide = arg == "--api-key"
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    levels: list[dict[str, Any]] = []
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.url:
        # One server for every mode: later modes find the caches earlier ones left.
        for mode in modes:
            levels += asyncio.run(run_mode(args.url.rstrip("/"), mode, args))
    else:
        for mode in modes:
            with local_target(args) as base:
                levels += asyncio.run(run_mode(base, mode, args))
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "api_key"}
    payload = {
        "command": shlex.join(
            ["python", "-m", "bench.loadtest", *redacted(sys.argv[1:] if argv is None else argv)]
        ),
        "target": args.url or "local server on loopback",
        "config": config,
        "git": git_commit(),
        "machine": machine(),
        "levels": levels,
    }
    write_results(args.name, without_nan(payload), markdown(payload), args.out_dir)
    plot(payload, args.out_dir / f"{args.name}.png")
    print(markdown(payload))
    return payload


if __name__ == "__main__":
    main()
