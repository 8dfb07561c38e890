"""Load test: Poisson arrival rates rising until the SLO breaks, per blend mode, on a RAG workload.

Workload `squad` (default): the SQuAD 2.0 paragraphs are ingested as documents of one collection
(through the API: chunking, embedding and the chunk caches' precompute), then the answerable
questions are asked with `collection` + `top_k`, drawn with Zipf-skewed popularity so that popular
chunks recur, in the order retrieval ranks them. Workload `musique`: each question with its passages
inline, shuffled per request (see bench/loadtest.py).

For each mode (one fresh local server each, all started together, or `--url`), after a warm-up,
rates start at `--start-rate` and double (or follow `--rates`); a level sends Poisson arrivals for
`--level-seconds` and waits for its answers (bounded). By default the levels are interleaved: level 1
of every mode, then level 2 of every mode, so that other work on a shared machine weighs on all
modes alike. The SLO holds when p99 TTFT <= `--slo-ttft-ms`, every inter-token gap of at least
`--attainment` of the requests <= `--slo-itl-ms`, and nothing failed. A mode stops at its first
level that breaks it, and every mode after `--max-levels`: the sustained rate of a mode is the
highest level that held. Streams /generate, or /v1/chat/completions with `--endpoint openai`.

Rerun: the command is in the results' markdown. Writes: bench/results/<name>.{json,md,png}
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import shlex
import sys
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.common import RESULTS, machine, write_results
from bench.load_client import Payload, RequestRecord, Sender, open_loop, stream_generate
from bench.load_openai import stream_chat
from bench.load_squad import ingest, squad_payloads, squad_pool
from bench.load_stats import Slo, kv_hit_rates, summarize, without_nan
from bench.load_sweep_report import markdown, plot, sustained
from bench.loadtest import (
    floats,
    git_version,
    local_target,
    make_payloads,
    questions,
    redacted,
    scrape,
    settle,
)


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
    p.add_argument(
        "--order",
        choices=("interleaved", "by-mode"),
        default="interleaved",
        help="interleaved: each level runs every mode in turn; by-mode: one mode after another",
    )
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
    p.add_argument("--settle-seconds", type=float, default=3.0,
                   help="before a level, chunk-cache writes must have held still this long")  # fmt: skip
    p.add_argument("--threads", type=int, default=2, help="torch threads of a local server")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="load_sweep")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    args.shuffle, args.prewarm = True, True  # what loadtest's helpers read
    return args


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


@dataclass
class Target:
    """One blend mode on its server, ready to be loaded: where to send, what, and how."""

    mode: str
    base: str
    url: str
    send: Sender
    draw: Callable[[int], list[Payload]]


async def prepare(client: httpx.AsyncClient, base: str, mode: str, args: argparse.Namespace) -> Target:
    """Ingest the workload's collection (squad), then warm the server up with a few requests."""
    rng = random.Random(args.seed)  # the same seed per mode: every mode is asked the same questions
    if args.workload == "squad":
        paragraphs, asked = squad_pool(args)
        await ingest(client, base, paragraphs)

        def draw_plain(count: int) -> list[Payload]:
            return squad_payloads(asked, count, mode, rng, args)
    else:
        pool = questions(args.pool or 16)

        def draw_plain(count: int) -> list[Payload]:
            return make_payloads(pool, count, mode, rng, args)

    model = await served_model(client, base) if args.endpoint == "openai" else None

    def draw(count: int) -> list[Payload]:
        return with_model(draw_plain(count), model)

    openai = args.endpoint == "openai"
    target = Target(mode, base, f"{base}/v1/chat/completions" if openai else f"{base}/generate",
                    stream_chat if openai else stream_generate, draw)  # fmt: skip
    for payload in draw(args.warmup):
        rec = RequestRecord(index=-1)
        await target.send(client, target.url, payload, rec)
        if not rec.ok:
            raise SystemExit(f"warm-up request failed ({mode}): {rec.error}")
    await settle(client, base, quiet_s=args.settle_seconds)
    return target


async def run_level(
    client: httpx.AsyncClient, target: Target, rate: float, index: int, args: argparse.Namespace
) -> dict[str, Any]:
    payloads = target.draw(max(4, math.ceil(rate * args.level_seconds)))
    before = await scrape(client, target.base)
    start = asyncio.get_running_loop().time()
    # arrivals within level_seconds; answers may take up to three times that before they count as
    # failures, so an overloaded level ends by itself
    records = await open_loop(
        client, target.url, payloads, rate, args.level_seconds * 4, args.seed + index, target.send
    )
    wall = asyncio.get_running_loop().time() - start
    summary = summarize(records, wall, Slo(args.slo_ttft_ms, args.slo_itl_ms))
    broke = breaks_slo(summary, args)
    level = {"mode": target.mode, "rate": rate, "summary": summary, "slo_broken": broke,
             "kv_hit_rates": kv_hit_rates(before, await scrape(client, target.base))}  # fmt: skip
    print(f"{target.mode} {rate:g} req/s: {summary['completed']}/{summary['sent']} ok, TTFT p50 "
          f"{summary['ttft_ms']['p50']:.0f} p99 {summary['ttft_ms']['p99']:.0f} ms, "
          f"{'SLO broken: ' + broke if broke else 'SLO held'}", flush=True)  # fmt: skip
    return level


def schedule(modes: list[str], levels: int, order: str) -> list[tuple[str, int]]:
    """(mode, level index) in the order they run. Interleaved: each level runs every mode in turn,
    starting one mode later each level, so a busy spell on a shared machine hits all modes alike."""
    if order == "by-mode":
        return [(m, i) for m in modes for i in range(levels)]
    return [(modes[(i + k) % len(modes)], i) for i in range(levels) for k in range(len(modes))]


async def sweep(bases: dict[str, str], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each mode's levels, in `args.order`, a mode dropping out at the first level that breaks the SLO."""
    headers = {"authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    timeout = httpx.Timeout(args.level_seconds * 4 + 60, connect=10)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    rates = (args.rates or [args.start_rate * 2**i for i in range(args.max_levels)])[: args.max_levels]
    levels: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=timeout, headers=headers, limits=limits) as client:
        targets = {mode: await prepare(client, base, mode, args) for mode, base in bases.items()}
        broken: set[str] = set()
        for mode, i in schedule(list(bases), len(rates), args.order):
            if mode in broken:
                continue
            level = await run_level(client, targets[mode], rates[i], i, args)
            levels.append(level)
            if len(targets) > 1:
                # chunk caches written after this level's answers must not load another mode's level
                await settle(client, targets[mode].base, quiet_s=args.settle_seconds)
            if level["slo_broken"]:
                broken.add(mode)
    return levels


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.url:
        levels = asyncio.run(sweep({mode: args.url.rstrip("/") for mode in modes}, args))
    else:
        with ExitStack() as servers:  # one fresh server per mode, all up at once for interleaving
            bases = {mode: servers.enter_context(local_target(args)) for mode in modes}
            levels = asyncio.run(sweep(bases, args))
    argv_list = sys.argv[1:] if argv is None else argv
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "api_key"}
    payload = {
        "command": shlex.join(["python", "-m", "bench.load", *redacted(argv_list)]),
        "target": args.url or "a fresh local server per mode, on loopback",
        "config": config,
        "git": git_version(),
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
