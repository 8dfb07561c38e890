"""Mixed traffic through the HTTP API: warm and cold requests, an upload running during part of it.

A trace of MuSiQue questions with their passages inline (`--passages` each, cut to `--words` words),
Zipf-skewed popularity over a pool, Poisson arrivals at `--rate`, and a share `--new-share` of requests
whose passages were never seen (cold). While the trace runs, SQuAD paragraphs are uploaded to a
collection (ingestion: chunking, embedding, chunk-cache warm-up, all model work at background
priority). The same trace runs against each `--modes` entry on a fresh local server: `full` (no reuse)
and `default` (the default blend mode). Per class (warm, cold): TTFT p50 / p99 (server-reported
`ttft_ms`) and goodput under `--slo-ms`. Then the back-to-back check: each of `--check` questions with
`full`, then the default mode twice, one after the other; the ratio of the second blended TTFT to full.
vLLM with prefix caching (`RAGBLEND_ENGINE=vllm`) is `--modes vllm-prefix`, and the vLLM backend
blending in its worker `--modes vllm-probe` (with vLLM's prefix caching beside it, the default) or
`vllm-probe-nopc` (without), all run from `.venv-vllm`. With `--reorder`, a warm
request's passages come in a new order each time, as a retriever's ranking varies: what a prefix
cache cannot reuse past the first moved passage and a blend can.

    .venv/bin/python -m bench.mixed --requests 16 --rates 0.1
    .venv-vllm/bin/python -m bench.mixed --modes full,probe,vllm-prefix --rates 0.25,0.5,1,2
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from bench import datasets
from bench.common import RESULTS, git_commit, machine, write_results
from bench.local_server import local_server

# Settings of every server, then per mode: the server's settings and the request's `blend` field.
# The correctness gate is off: it would turn the embedded model's default to `full`; the blend
# modes are named per request here, and `default` measures whatever the server chose.
SERVER_ENV = {"RAGBLEND_MAX_BATCH_SIZE": "8", "RAGBLEND_BLEND_GATE": "false"}
SERVERS = {
    "full": ({}, {"mode": "full"}),
    "default": ({}, None),
    "probe": ({}, {"mode": "probe"}),
    "vllm-prefix": ({"RAGBLEND_ENGINE": "vllm", "RAGBLEND_VLLM_PREFIX_CACHING": "true"}, {"mode": "full"}),
    "vllm-probe": ({"RAGBLEND_ENGINE": "vllm"}, {"mode": "probe"}),
    # the vLLM backend's blend alone, without vLLM's prefix cache beside it
    "vllm-probe-nopc": (
        {"RAGBLEND_ENGINE": "vllm", "RAGBLEND_VLLM_PREFIX_CACHING": "false"},
        {"mode": "probe"},
    ),
}


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def trace(args: argparse.Namespace, rate: float, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`args.requests` arrivals at `rate` over `rows` (a pool of `args.pool` popular examples first)."""
    rng = random.Random(args.seed)
    order = random.Random(args.seed + 1)  # its own stream: --reorder leaves the arrivals as they were
    pool = list(range(args.pool))
    weights = [1 / (r + 1) ** args.zipf for r in pool]
    fresh = iter(range(args.pool, len(rows)))
    seen: set[int] = set()
    out, t = [], 0.0
    for _ in range(args.requests):
        t += rng.expovariate(rate)
        idx = next(fresh, None) if rng.random() < args.new_share else rng.choices(pool, weights)[0]
        if idx is None:
            raise SystemExit("the data set has too few questions for this sweep; lower --requests or --rates")
        ex = rows[idx]
        docs = [
            " ".join((c["title"] + ". " + c["text"]).split()[: args.words])
            for c in ex["ctxs"][: args.passages]
        ]
        cls = "warm" if idx in seen else "cold"
        if cls == "warm" and args.reorder:
            order.shuffle(docs)
        seen.add(idx)
        out.append({"at": t, "query": ex["question"], "documents": docs, "class": cls})
    return out


def upload(base: str, paragraphs: list[str], log: dict[str, Any], name: str) -> None:
    started = time.perf_counter()
    with httpx.Client(timeout=60) as c:
        c.post(f"{base}/v1/collections", json={"name": name})
        docs = [{"text": p, "name": f"p{i}"} for i, p in enumerate(paragraphs)]
        job = c.post(f"{base}/v1/collections/{name}/documents", json={"documents": docs}).json()["job_id"]
        while (state := c.get(f"{base}/v1/jobs/{job}").json())["state"] not in ("succeeded", "failed"):
            time.sleep(0.5)
    log.update(state=state["state"], seconds=round(time.perf_counter() - started, 1), documents=len(docs))


def ask(base: str, req: dict[str, Any], blend: dict[str, Any] | None, max_tokens: int) -> dict[str, Any]:
    body: dict[str, Any] = {"query": req["query"], "documents": req["documents"], "max_tokens": max_tokens}
    if blend is not None:
        body["blend"] = blend
    r = httpx.post(f"{base}/generate", json=body, timeout=600)
    if r.status_code != 200:
        return {"error": r.status_code}
    data = r.json()
    return {
        "ttft_ms": data["timings"]["ttft_ms"],
        "cached": data["usage"]["cached_tokens"],
        "timings": data["timings"],
        "usage": data["usage"],
    }


def run_trace(
    base: str, items: list[dict[str, Any]], blend: dict[str, Any] | None, args: argparse.Namespace, tag: str
) -> dict[str, Any]:
    """The trace against one server, with an upload to collection `tag` running during it."""
    squad = datasets.squad()["data"]
    paragraphs = [p["context"] for a in squad for p in a["paragraphs"]][: args.upload_paragraphs]
    up: dict[str, Any] = {}
    uploader = threading.Thread(target=upload, args=(base, paragraphs, up, tag), daemon=True)
    results: list[dict[str, Any]] = [{} for _ in items]
    threads = []
    t0 = time.perf_counter()
    uploader.start()
    for i, item in enumerate(items):
        time.sleep(max(0.0, t0 + item["at"] - time.perf_counter()))

        def go(i: int = i, item: dict[str, Any] = item) -> None:
            results[i] = {**ask(base, item, blend, args.max_tokens), "class": item["class"]}

        threads.append(threading.Thread(target=go))
        threads[-1].start()
    for th in threads:
        th.join()
    # The upload may outlast the trace; it must end before the next run, on this server or another.
    uploader.join()
    summary: dict[str, Any] = {"upload": up, "requests": results}
    for cls in ("warm", "cold"):
        ok = [r["ttft_ms"] for r in results if r.get("class") == cls and "ttft_ms" in r]
        n = sum(r.get("class") == cls for r in results)
        good = sum(x <= args.slo_ms for x in ok)
        summary[cls] = {
            "n": n,
            "p50": pct(ok, 0.5),
            "p99": pct(ok, 0.99),
            "goodput_share": good / n if n else None,
        }
    # A failed request counts as a miss.
    summary["within_slo"] = sum(r.get("ttft_ms", float("inf")) <= args.slo_ms for r in results) / len(results)
    return summary


def back_to_back(base: str, blend: dict[str, Any] | None, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each check question with `full`, then the mode twice in a row: the second blended TTFT vs full."""
    check = []
    for item in trace_check(args):
        full = ask(base, item, {"mode": "full"}, args.max_tokens)
        first = ask(base, item, blend, args.max_tokens)
        second = ask(base, item, blend, args.max_tokens)
        check.append(
            {
                "full_ms": full.get("ttft_ms"),
                "second_ms": second.get("ttft_ms"),
                # where the blended requests' time went (server-reported timings and usage)
                "first": {k: first.get(k) for k in ("timings", "usage")},
                "second": {k: second.get(k) for k in ("timings", "usage")},
            }
        )
    return check


def sustained(by_rate: dict[float, dict[str, Any]], share: float) -> float | None:
    """The highest rate at which this and every lower rate kept `share` of requests within the SLO."""
    best = None
    for rate in sorted(by_rate):
        if by_rate[rate]["within_slo"] < share:
            break
        best = rate
    return best


def trace_check(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = datasets.musique()[-args.check :]
    return [
        {
            "query": ex["question"],
            "documents": [
                " ".join((c["title"] + ". " + c["text"]).split()[: args.words])
                for c in ex["ctxs"][: args.passages]
            ],
        }
        for ex in rows
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modes", default="full,probe")
    p.add_argument("--requests", type=int, default=16)
    p.add_argument("--rates", default="0.1", help="arrival rates (req/s), comma-separated: a sweep")
    p.add_argument("--pool", type=int, default=4)
    p.add_argument("--zipf", type=float, default=1.1)
    p.add_argument("--new-share", type=float, default=0.3)
    p.add_argument("--passages", type=int, default=3)
    p.add_argument("--words", type=int, default=120)
    p.add_argument(
        "--reorder",
        action="store_true",
        help="warm requests get their passages in a new random order (as a retriever's ranking varies)",
    )
    p.add_argument("--max-tokens", type=int, default=8)
    p.add_argument("--slo-ms", type=float, default=3000)
    p.add_argument("--goodput", type=float, default=0.9, help="share within the SLO that counts as sustained")
    p.add_argument("--upload-paragraphs", type=int, default=10)
    p.add_argument("--check", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="mixed")
    datasets.add_data_option(p)
    args = p.parse_args()
    datasets.use_data(args.data, datasets.MUSIQUE, datasets.SQUAD)
    rates = sorted(float(r) for r in args.rates.split(","))
    names = args.modes.split(",")
    rows = datasets.musique()[: -args.check or None]  # the last ones are the back-to-back check's
    per = len(rows) // len(rates)
    traces = {rate: trace(args, rate, rows[k * per : (k + 1) * per]) for k, rate in enumerate(rates)}
    modes: dict[str, dict[str, Any]] = {m: {"rates": {}} for m in names}
    load_start = list(os.getloadavg())  # other work on the machine shows here
    with ExitStack() as stack:
        # Every server is up for the whole run and the modes take turns at each rate, so a change in
        # the machine's load over the run falls on all of them alike.
        bases = {m: stack.enter_context(local_server({**SERVERS[m][0], **SERVER_ENV})) for m in names}
        for m in names:
            ask(bases[m], {"query": "Hello.", "documents": ["A warm-up note."]}, SERVERS[m][1], 2)
        for k, rate in enumerate(rates):
            for m in names:
                summary = run_trace(bases[m], traces[rate], SERVERS[m][1], args, f"squad-mixed-{k}")
                modes[m]["rates"][rate] = summary
                print(f"{m} at {rate:g} req/s: {summary['within_slo']:.0%} within the SLO", flush=True)
        for m in names:
            modes[m]["check"] = back_to_back(bases[m], SERVERS[m][1], args) if m != "full" else []
    for m in names:
        modes[m]["sustained_rate"] = sustained(modes[m]["rates"], args.goodput)
    table = report(modes, rates, args)
    payload = {
        "command": " ".join(sys.argv),
        "commit": git_commit(),
        "machine": machine(),
        "load_average": {"start": load_start, "end": list(os.getloadavg())},
        "args": {k: str(v) for k, v in vars(args).items()},
        "modes": {m: {**s, "rates": {str(r): v for r, v in s["rates"].items()}} for m, s in modes.items()},
    }
    print(table, flush=True)
    write_results(args.name, payload, table)
    plot(modes, RESULTS / f"{args.name}.png", args)


def report(modes: dict[str, dict[str, Any]], rates: list[float], args: argparse.Namespace) -> str:
    f = lambda x: "-" if x is None else f"{x:,.0f}"  # noqa: E731
    lines = [
        f"Mixed trace: {args.requests} requests per rate, {args.passages} passages of <= {args.words} words,"
        f" {args.new_share:.0%} new documents{', warm ones reordered' if args.reorder else ''},"
        f" SLO TTFT {args.slo_ms:g} ms,"
        f" an upload of {args.upload_paragraphs} SQuAD paragraphs during each run."
        f" Sustained: the highest rate with >= {args.goodput:.0%} of requests within the"
        " SLO at it and every lower rate.",
        "",
        "| rate req/s | mode | warm n | warm p50 / p99 ms | cold n | cold p50 / p99 ms | within SLO |",
        "| ---: | --- | ---: | --- | ---: | --- | ---: |",
    ]
    for rate in rates:
        for m, s in modes.items():
            r = s["rates"][rate]
            w, c = r["warm"], r["cold"]
            lines.append(
                f"| {rate:g} | {m} | {w['n']} | {f(w['p50'])} / {f(w['p99'])} | {c['n']} |"
                f" {f(c['p50'])} / {f(c['p99'])} | {r['within_slo']:.0%} |"
            )
    lines += ["", "| mode | sustained req/s | vs full | vs vllm-prefix |", "| --- | ---: | ---: | ---: |"]
    base_full = modes.get("full", {}).get("sustained_rate")
    base_vllm = modes.get("vllm-prefix", {}).get("sustained_rate")
    for m, s in modes.items():
        got = s["sustained_rate"]
        vs = [f"{got / b:.2f}x" if got and b else "-" for b in (base_full, base_vllm)]
        shown = f"< {rates[0]:g}" if got is None else f"{got:g}"
        lines.append(f"| {m} | {shown} | {vs[0]} | {vs[1]} |")
    for m, s in modes.items():
        for row in s["check"]:
            if row["full_ms"] and row["second_ms"]:
                lines.append(
                    f"\nback-to-back check ({m}): second blended {row['second_ms']:,.0f} ms"
                    f" / full {row['full_ms']:,.0f} ms = {row['second_ms'] / row['full_ms']:.2f}x"
                )
    return "\n".join(lines) + "\n"


def plot(modes: dict[str, dict[str, Any]], path: Path, args: argparse.Namespace) -> None:
    """Per mode: the share within the SLO and the warm p50 TTFT against the arrival rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    for m, s in modes.items():
        rates = sorted(s["rates"])
        left.plot(rates, [s["rates"][r]["within_slo"] for r in rates], marker="o", label=m)
        right.plot(rates, [s["rates"][r]["warm"]["p50"] or 0 for r in rates], marker="o", label=m)
    left.axhline(args.goodput, color="grey", linestyle=":")
    left.set_xlabel("arrival rate req/s")
    left.set_ylabel(f"share within {args.slo_ms:g} ms")
    right.set_xlabel("arrival rate req/s")
    right.set_ylabel("warm p50 TTFT ms")
    left.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
