"""Load test: Poisson arrival rates rising until the SLO breaks, per blend mode, on a RAG workload.

Workload `squad` (default): the SQuAD 2.0 paragraphs are ingested as documents of one collection
(through the API: chunking, embedding and the chunk caches' precompute), then the answerable
questions are asked with `collection` + `top_k`, drawn with Zipf-skewed popularity so that popular
chunks recur, in the order retrieval ranks them. Workload `musique`: each question with its passages
inline, shuffled per request (see bench/loadtest.py).

For each mode (one fresh local server each, or `--url`), after a warm-up, rates start at
`--start-rate` and double; a level sends Poisson arrivals for `--level-seconds` and waits for its
answers (bounded). The SLO holds when p99 TTFT <= `--slo-ttft-ms`, every inter-token gap of at least
`--attainment` of the requests <= `--slo-itl-ms`, and nothing failed. The sweep stops at the first
level that breaks it, or after `--max-levels`: the sustained rate of a mode is the highest level
that held. Streams /generate, or /v1/chat/completions with `--endpoint openai`.

Rerun (the committed results; about 25 minutes on two cores):
    .venv/bin/python -m bench.load            (or: ragblend bench load)
Writes: bench/results/<name>.{json,md,png}
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import shlex
import sys
from pathlib import Path
from typing import Any

import httpx

from bench import datasets
from bench.common import RESULTS, git_commit, machine, write_results
from bench.load_client import Payload, RequestRecord, Sender, open_loop, stream_generate
from bench.load_openai import stream_chat
from bench.load_stats import Slo, kv_hit_rates, summarize, without_nan
from bench.load_sweep_report import markdown, plot, sustained
from bench.loadtest import (
    floats,
    local_target,
    make_payloads,
    questions,
    redacted,
    scrape,
    settle,
)

COLLECTION = "load-squad"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="a running server (default: a fresh local one per mode, on loopback)")
    p.add_argument("--api-key", help="sent as a Bearer token")
    p.add_argument("--endpoint", choices=("generate", "openai"), default="generate")
    p.add_argument("--workload", choices=("squad", "musique"), default="squad")
    p.add_argument("--modes", default="cachecraft,prefix,full", help="blend modes, comma separated")
    p.add_argument("--start-rate", type=float, default=0.25, help="requests/s of the first level")
    p.add_argument("--rates", type=floats, default=[], help="explicit rates instead of doubling")
    p.add_argument("--max-levels", type=int, default=6)
    p.add_argument("--level-seconds", type=float, default=40.0, help="arrivals last this long")
    p.add_argument("--slo-ttft-ms", type=float, default=2000.0)
    p.add_argument("--slo-itl-ms", type=float, default=1000.0)
    p.add_argument("--attainment", type=float, default=0.9, help="share of requests within the ITL SLO")
    p.add_argument("--paragraphs", type=int, default=0, help="SQuAD paragraphs to ingest (0: all)")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--passages", type=int, default=4, help="musique: passages per question")
    p.add_argument("--pool", type=int, default=0, help="questions to draw from (0: all)")
    p.add_argument("--zipf", type=float, default=1.1)
    p.add_argument("--max-tokens", type=int, default=8)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="torch threads of a local server")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="load_sweep")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    datasets.add_data_option(p)
    args = p.parse_args(argv)
    datasets.use_data(args.data, datasets.SQUAD if args.workload == "squad" else datasets.MUSIQUE)
    args.shuffle, args.prewarm = True, True  # what loadtest's helpers read
    return args


def squad_pool(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """The paragraphs to ingest and the answerable questions about them."""
    paragraphs: list[str] = []
    asked: list[str] = []
    for article in datasets.squad()["data"]:
        for para in article["paragraphs"]:
            if args.paragraphs and len(paragraphs) >= args.paragraphs:
                break
            paragraphs.append(para["context"])
            asked += [qa["question"] for qa in para["qas"] if not qa["is_impossible"]]
    return paragraphs, asked[: args.pool] if args.pool else asked


async def ingest(client: httpx.AsyncClient, base: str, paragraphs: list[str], timeout_s: float = 900) -> None:
    """Create the collection (or reuse it) and ingest the paragraphs, waiting for every job."""
    r = await client.post(f"{base}/v1/collections", json={"name": COLLECTION})
    if r.status_code == 409:
        return  # already ingested on this server
    r.raise_for_status()
    jobs = []
    for first in range(0, len(paragraphs), 32):
        docs = [{"text": t, "name": f"p{first + i}"} for i, t in enumerate(paragraphs[first : first + 32])]
        r = await client.post(f"{base}/v1/collections/{COLLECTION}/documents", json={"documents": docs})
        r.raise_for_status()
        jobs.append(r.json()["job_id"])
    deadline = asyncio.get_running_loop().time() + timeout_s
    for job in jobs:
        while True:
            state = (await client.get(f"{base}/v1/jobs/{job}")).json()
            if state["state"] == "succeeded":
                break
            if state["state"] == "failed" or asyncio.get_running_loop().time() > deadline:
                raise SystemExit(f"ingestion job {job} did not succeed: {state}")
            await asyncio.sleep(1.0)


def squad_payloads(asked: list[str], count: int, mode: str, rng: random.Random, args: Any) -> list[Payload]:
    weights = [1 / (rank + 1) ** args.zipf for rank in range(len(asked))]
    return [
        {"query": q, "collection": COLLECTION, "top_k": args.top_k, "max_tokens": args.max_tokens,
         "blend": {"mode": mode}}
        for q in rng.choices(asked, weights=weights, k=count)
    ]  # fmt: skip


async def served_model(client: httpx.AsyncClient, base: str) -> str:
    """The model name the OpenAI-compatible route expects (the first of GET /v1/models)."""
    r = await client.get(f"{base}/v1/models")
    r.raise_for_status()
    return str(r.json()["data"][0]["id"])


def with_model(payloads: list[Payload], model: str | None) -> list[Payload]:
    return [{**p, "model": model} for p in payloads] if model else payloads


def breaks_slo(summary: dict[str, Any], args: argparse.Namespace) -> str | None:
    """Why a level broke the SLO, or None when it held."""
    if summary["errors"]:
        return f"{summary['errors']} errors"
    p99 = summary["ttft_ms"]["p99"]
    if math.isnan(p99) or p99 > args.slo_ttft_ms:
        return f"p99 TTFT {p99:.0f} ms"
    if summary["slo_attainment"] < args.attainment:
        return f"SLO attainment {summary['slo_attainment']:.0%}"
    return None


async def sweep_mode(base: str, mode: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    headers = {"authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    send: Sender = stream_chat if args.endpoint == "openai" else stream_generate
    url = f"{base}/v1/chat/completions" if args.endpoint == "openai" else f"{base}/generate"
    slo = Slo(args.slo_ttft_ms, args.slo_itl_ms)
    rng = random.Random(args.seed)
    timeout = httpx.Timeout(args.level_seconds * 4 + 60, connect=10)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    levels: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=timeout, headers=headers, limits=limits) as client:
        if args.workload == "squad":
            paragraphs, asked = squad_pool(args)
            await ingest(client, base, paragraphs)

            def draw(count: int) -> list[Payload]:
                return squad_payloads(asked, count, mode, rng, args)
        else:
            pool = questions(args.pool or 16)

            def draw(count: int) -> list[Payload]:
                return make_payloads(pool, count, mode, rng, args)

        model = await served_model(client, base) if args.endpoint == "openai" else None
        for payload in with_model(draw(args.warmup), model):
            rec = RequestRecord(index=-1)
            await send(client, url, payload, rec)
            if not rec.ok:
                raise SystemExit(f"warm-up request failed: {rec.error}")
        await settle(client, base)
        rates = args.rates or [args.start_rate * 2**i for i in range(args.max_levels)]
        for i, rate in enumerate(rates[: args.max_levels]):
            payloads = with_model(draw(max(4, math.ceil(rate * args.level_seconds))), model)
            before = await scrape(client, base)
            start = asyncio.get_running_loop().time()
            # arrivals within level_seconds; answers may take up to three times that before they count as
            # failures, so an overloaded level ends by itself
            records = await open_loop(
                client, url, payloads, rate, args.level_seconds * 4, args.seed + i, send
            )
            wall = asyncio.get_running_loop().time() - start
            summary = summarize(records, wall, slo)
            broke = breaks_slo(summary, args)
            levels.append({"mode": mode, "rate": rate, "summary": summary, "slo_broken": broke,
                           "kv_hit_rates": kv_hit_rates(before, await scrape(client, base))})  # fmt: skip
            print(f"{mode} {rate:g} req/s: {summary['completed']}/{summary['sent']} ok, TTFT p50 "
                  f"{summary['ttft_ms']['p50']:.0f} p99 {summary['ttft_ms']['p99']:.0f} ms, "
                  f"{'SLO broken: ' + broke if broke else 'SLO held'}", flush=True)  # fmt: skip
            if broke:
                break
    return levels


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    levels: list[dict[str, Any]] = []
    for mode in modes:
        if args.url:
            levels += asyncio.run(sweep_mode(args.url.rstrip("/"), mode, args))
        else:
            with local_target(args) as base:
                levels += asyncio.run(sweep_mode(base, mode, args))
    argv_list = sys.argv[1:] if argv is None else argv
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "api_key"}
    payload = {
        "command": shlex.join(["python", "-m", "bench.load", *redacted(argv_list)]),
        "target": args.url or "a fresh local server per mode, on loopback",
        "config": config,
        "git": git_commit(),
        "machine": machine(),
        "levels": levels,
        "sustained": sustained(levels, modes),
    }
    write_results(args.name, without_nan(payload), markdown(payload), args.out_dir)
    plot(payload, args.out_dir / f"{args.name}.png")
    print(markdown(payload))
    return payload


if __name__ == "__main__":
    main()
