"""Mixed traffic through the HTTP API: warm and cold requests, an upload running during part of it.

A trace of MuSiQue questions with their passages inline (`--passages` each, cut to `--words` words),
Zipf-skewed popularity over a pool, Poisson arrivals at `--rate`, and a share `--new-share` of requests
whose passages were never seen (cold). While the trace runs, SQuAD paragraphs are uploaded to a
collection (ingestion: chunking, embedding, chunk-cache warm-up, all model work at background
priority). The same trace runs against each `--modes` entry on a fresh local server: `full` (no reuse)
and `default` (the default blend mode). Per class (warm, cold): TTFT p50 / p99 (server-reported
`ttft_ms`) and goodput under `--slo-ms`. Then the back-to-back check: each of `--check` questions with
`full`, then the default mode twice, one after the other; the ratio of the second blended TTFT to full.
vLLM with prefix caching (`RAGBLEND_ENGINE=vllm`) is `--modes vllm-prefix`, run from `.venv-vllm`.

    .venv/bin/python -m bench.mixed --requests 16 --rate 0.1
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench import datasets
from bench.common import RESULTS, git_commit, machine, write_results
from bench.local_server import local_server

SERVERS = {
    "full": ({}, {"mode": "full"}),
    "default": ({}, None),
    "vllm-prefix": ({"RAGBLEND_ENGINE": "vllm", "RAGBLEND_VLLM_PREFIX_CACHING": "true"}, {"mode": "full"}),
}


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def trace(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = datasets.musique()
    rng = random.Random(args.seed)
    pool = list(range(args.pool))
    weights = [1 / (r + 1) ** args.zipf for r in pool]
    fresh = iter(range(args.pool, len(rows)))
    seen: set[int] = set()
    out, t = [], 0.0
    for _ in range(args.requests):
        t += rng.expovariate(args.rate)
        idx = next(fresh) if rng.random() < args.new_share else rng.choices(pool, weights)[0]
        ex = rows[idx]
        docs = [
            " ".join((c["title"] + ". " + c["text"]).split()[: args.words])
            for c in ex["ctxs"][: args.passages]
        ]
        cls = "warm" if idx in seen else "cold"
        seen.add(idx)
        out.append({"at": t, "query": ex["question"], "documents": docs, "class": cls})
    return out


def upload(base: str, paragraphs: list[str], log: dict[str, Any]) -> None:
    started = time.perf_counter()
    with httpx.Client(timeout=60) as c:
        c.post(f"{base}/v1/collections", json={"name": "squad-mixed"})
        docs = [{"text": p, "name": f"p{i}"} for i, p in enumerate(paragraphs)]
        job = c.post(f"{base}/v1/collections/squad-mixed/documents", json={"documents": docs}).json()[
            "job_id"
        ]
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
    return {"ttft_ms": data["timings"]["ttft_ms"], "cached": data["usage"]["cached_tokens"]}


def run_mode(name: str, items: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    env, blend = SERVERS[name]
    env = {**env, "RAGBLEND_MAX_BATCH_SIZE": "8"}
    squad = datasets.squad()["data"]
    paragraphs = [p["context"] for a in squad[: args.upload_articles] for p in a["paragraphs"]]
    with local_server(env) as base:
        ask(base, {"query": "Hello.", "documents": ["A warm-up note."]}, blend, 2)
        up: dict[str, Any] = {}
        uploader = threading.Thread(target=upload, args=(base, paragraphs, up), daemon=True)
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
        uploader.join(timeout=args.upload_wait_s)  # the upload may outlast the trace
        check = []
        if name != "full":
            for item in trace_check(args):
                full = ask(base, item, {"mode": "full"}, args.max_tokens)
                ask(base, item, blend, args.max_tokens)
                second = ask(base, item, blend, args.max_tokens)
                check.append({"full_ms": full.get("ttft_ms"), "second_ms": second.get("ttft_ms")})
    summary: dict[str, Any] = {"upload": up, "requests": results, "check": check}
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
    return summary


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
    p.add_argument("--modes", default="full,default")
    p.add_argument("--requests", type=int, default=16)
    p.add_argument("--rate", type=float, default=0.1)
    p.add_argument("--pool", type=int, default=4)
    p.add_argument("--zipf", type=float, default=1.1)
    p.add_argument("--new-share", type=float, default=0.3)
    p.add_argument("--passages", type=int, default=3)
    p.add_argument("--words", type=int, default=120)
    p.add_argument("--max-tokens", type=int, default=8)
    p.add_argument("--slo-ms", type=float, default=3000)
    p.add_argument("--upload-articles", type=int, default=1)
    p.add_argument("--check", type=int, default=2)
    p.add_argument("--upload-wait-s", type=float, default=120)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="mixed")
    datasets.add_data_option(p)
    args = p.parse_args()
    datasets.use_data(args.data, datasets.MUSIQUE, datasets.SQUAD)
    items = trace(args)
    modes = {m: run_mode(m, items, args) for m in args.modes.split(",")}
    commit = git_commit()
    lines = [
        f"Mixed trace: {args.requests} requests at {args.rate} req/s, {args.passages} passages of"
        f" <= {args.words} words, {args.new_share:.0%} new documents, SLO TTFT {args.slo_ms:g} ms,"
        " an upload of SQuAD paragraphs during it.",
        "",
        "| mode | warm n | warm p50 / p99 ms | warm within SLO"
        " | cold n | cold p50 / p99 ms | cold within SLO |",
        "| --- | ---: | --- | ---: | ---: | --- | ---: |",
    ]
    f = lambda x: "-" if x is None else f"{x:,.0f}"  # noqa: E731
    for m, s in modes.items():
        w, c = s["warm"], s["cold"]
        lines.append(
            f"| {m} | {w['n']} | {f(w['p50'])} / {f(w['p99'])} | {w['goodput_share'] or 0:.0%} | {c['n']} |"
            f" {f(c['p50'])} / {f(c['p99'])} | {c['goodput_share'] or 0:.0%} |"
        )
    for m, s in modes.items():
        for row in s["check"]:
            if row["full_ms"] and row["second_ms"]:
                lines.append(
                    f"\nback-to-back check ({m}): second blended {row['second_ms']:,.0f} ms"
                    f" / full {row['full_ms']:,.0f} ms = {row['second_ms'] / row['full_ms']:.2f}x"
                )
    table = "\n".join(lines) + "\n"
    payload = {
        "command": " ".join(sys.argv),
        "commit": commit,
        "machine": machine(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "modes": modes,
    }
    print(table, flush=True)
    write_results(args.name, payload, table)
    plot(modes, RESULTS / f"{args.name}.png")


def plot(modes: dict[str, Any], path: Path) -> None:
    """Per class and mode, p50 and p99 TTFT as bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    labels = [f"{m}\n{c}" for m in modes for c in ("warm", "cold")]
    p50 = [modes[m][c]["p50"] or 0 for m in modes for c in ("warm", "cold")]
    p99 = [modes[m][c]["p99"] or 0 for m in modes for c in ("warm", "cold")]
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], p50, 0.4, label="p50")
    ax.bar([x + 0.2 for x in xs], p99, 0.4, label="p99")
    ax.set_xticks(list(xs), labels)
    ax.set_ylabel("TTFT ms")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
