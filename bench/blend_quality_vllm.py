"""Blend modes on the vLLM backend, with plain vLLM as the baseline in the same run.

Per MuSiQue example (passages as chunks whose caches were computed alone, after the system prefix):

1. plain vLLM, prefix caching off: TTFT of a full prefill and the greedy reference answer;
2. plain vLLM, prefix caching on: the prompt once in its original order (warming vLLM's prefix cache),
   then TTFT with the passages in reverse order (what a RAG system sees when retrieval reorders);
3. the vLLM backend with our connector: the original-order prompt once in mode reuse (vLLM prefills,
   the passages' caches are stored after the answer), then every mode on the reversed prompt: TTFT
   from the request to its first token (lookup, blend, handoff and vLLM's last-token step included)
   and the greedy answer against plain vLLM's on the same reversed prompt.

Each phase starts its own vLLM and stops it, so two cores serve one engine at a time.
Rerun:  .venv/bin/python -m bench.blend_quality --engine vllm   (VLLM_CPU_NUM_OF_RESERVED_CPU=0 is set)
Writes: bench/results/blend_quality_vllm.{json,md,png}
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer

from bench import datasets
from bench.blend_quality import ALL_MODES, plot
from bench.common import RESULTS, machine, write_results
from bench.metrics import best_f1, rouge_l
from engine.blend.options import BlendOptions
from engine.config import EngineConfig
from engine.events import TokenEvent
from engine.prompt import Prompt, PromptBuilder
from engine.sampling import SamplingParams
from engine.vllm.backend import VllmEngine
from engine.vllm.options import VllmOptions
from engine.vllm.runtime import VllmRuntime, engine_args
from server.settings import Settings

MODES: list[tuple[str, BlendOptions]] = [
    ("prefix (our store)", BlendOptions(mode="prefix")),
    ("reuse", BlendOptions(mode="reuse")),
    ("cacheblend r=0.05", BlendOptions(mode="cacheblend", ratio=0.05)),
    ("cacheblend r=0.15", BlendOptions(mode="cacheblend", ratio=0.15)),
    ("cacheblend r=0.30", BlendOptions(mode="cacheblend", ratio=0.30)),
    ("cachecraft r=0.15", BlendOptions(mode="cachecraft", ratio=0.15)),
    ("probe r=0.15", BlendOptions(mode="probe", ratio=0.15)),  # the default mode
]


def plain_phase(
    model_dir: Path,
    dtype: str,
    max_len: int,
    options: VllmOptions,
    prompts: list[tuple[Prompt, Prompt]],
    steps: int,
) -> list[dict[str, Any]]:
    """TTFT (and, without prefix caching, the greedy answer) of plain vLLM on each reordered prompt."""
    from vllm import SamplingParams as VllmSamplingParams
    from vllm.sampling_params import RequestOutputKind

    runtime = VllmRuntime(engine_args(model_dir, dtype, max_len, options, None), options)
    params = VllmSamplingParams(temperature=0, max_tokens=steps, output_kind=RequestOutputKind.DELTA)

    async def run(rid: str, ids: list[int]) -> tuple[float, list[int]]:
        started, first, tokens = time.perf_counter(), 0.0, list[int]()
        async for out in runtime.generate(rid, {"prompt_token_ids": ids}, params):
            first = first or time.perf_counter() - started
            tokens += out.outputs[0].token_ids
        return first, tokens

    rows = []
    try:
        for i, (original, reordered) in enumerate(prompts):
            if options.prefix_caching:
                runtime.call(run(f"warm-{i}", original.ids)).result()
            ttft, tokens = runtime.call(run(f"plain-{i}", reordered.ids)).result()
            rows.append({"ttft_s": ttft, "tokens": tokens})
    finally:
        runtime.close()
    return rows


# Where the backend blends (VllmOptions.blend_in_worker); the path named first is the table's main one.
PATHS = {"worker": True, "here": False}


def path_suffix(path: str, paths: list[str]) -> str:
    return "" if path == paths[0] else f" [blend {path}]"


def rss_mib() -> float:
    """Resident memory of this (the serving) process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def backend_phase(
    cfg: EngineConfig, prompts: list[tuple[Prompt, Prompt]], steps: int
) -> tuple[list[dict[str, dict[str, Any]]], dict[str, float]]:
    before = rss_mib()
    engine = VllmEngine(cfg)
    memory = {"rss_before_mib": before, "rss_started_mib": rss_mib()}
    out = []
    try:
        for i, (original, reordered) in enumerate(prompts):
            salt = f"bench-vllm-{i}"
            list(
                engine.generate(
                    original, SamplingParams(max_tokens=1), blend=BlendOptions(mode="reuse"), salt=salt
                )
            )
            # the passages' caches are written back at background priority, after the answer: wait for
            # them, or the first mode measured would find none
            engine.settle(timeout_s=900)
            per_mode = {}
            for name, opts in MODES:
                started, first, tokens, final = time.perf_counter(), 0.0, [], None
                for event in engine.generate(
                    reordered, SamplingParams(max_tokens=steps), blend=opts, salt=salt
                ):
                    if isinstance(event, TokenEvent):
                        first = first or time.perf_counter() - started
                        tokens.append(event.token_id)
                    else:
                        final = event
                assert final is not None
                per_mode[name] = {
                    "ttft_s": first,
                    "tokens": tokens,
                    "usage": final.extra_usage,
                    "timings": final.extra_timings,
                }
            out.append(per_mode)
            print(f"example {i + 1}/{len(prompts)} done", flush=True)
        memory["rss_served_mib"] = rss_mib()
    finally:
        engine.close()
    return out, memory


def summarize(rows: list[dict[str, Any]], paths: list[str]) -> list[dict[str, Any]]:
    names = ["vLLM full (prefix caching off)", "vLLM prefix caching, reordered"]
    names += [m + path_suffix(p, paths) for p in paths for m, _ in MODES]
    summary = []
    for name in names:
        sel = [r for r in rows if r["mode"] == name]
        summary.append(
            {
                "passages": sel[0]["passages"],
                "mode": name,
                "n": len(sel),
                "tokens": round(statistics.fmean(r["prompt_tokens"] for r in sel)),
                **{
                    k: statistics.fmean(r[k] for r in sel)
                    for k in ("f1", "rouge_l", "first_token", "computed_share")
                },
                **{
                    k: statistics.median(r[k] for r in sel)
                    for k in ("ttft_s", "ttft_ratio", "ttft_vs_prefix_cache")
                },
                "blend_ms": statistics.median(r.get("blend_ms", 0.0) for r in sel),
                "handoff_ms": statistics.median(r.get("handoff_ms", 0.0) for r in sel),
            }
        )
    return summary


def table(summary: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# Blend modes on the vLLM backend (vllm-cpu 0.32.0), MuSiQue",
        "",
        f"{meta['examples']} examples, {meta['passages']} passages in reverse order, greedy {meta['steps']} "
        f"tokens, dtype {meta['dtype']}, machine {meta['machine']}.",
        "Quality is against plain vLLM's answer to the same (reordered) prompt. TTFT ratios: median over "
        "examples, against plain vLLM's full prefill and against vLLM with prefix caching (warmed with the "
        "passages in their original order), measured in the same run.",
        "",
        "| mode | prompt tokens | F1 | ROUGE-L vs vLLM full | first token | TTFT s | TTFT / vLLM full | "
        "TTFT / vLLM prefix cache | computed share | blend ms | handoff ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in summary:
        lines.append(
            f"| {s['mode']} | {s['tokens']} | {s['f1']:.3f} | {s['rouge_l']:.3f} | {s['first_token']:.2f} | "
            f"{s['ttft_s']:.2f} | {s['ttft_ratio']:.3f} | {s['ttft_vs_prefix_cache']:.3f} | "
            f"{s['computed_share']:.3f} | {s['blend_ms']:.0f} | {s['handoff_ms']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def memory_table(memory: dict[str, dict[str, float]]) -> str:
    lines = [
        "",
        "Resident memory of the serving process (MiB): before the backend starts, once it is ready, "
        "and after the run (vLLM's own processes not included).",
        "",
        "| blend runs | before | ready | after the run |",
        "| --- | ---: | ---: | ---: |",
    ]
    for path, m in memory.items():
        where = "in vLLM's worker" if PATHS[path] else "here, on a copy of the weights"
        lines.append(
            f"| {where} | {m['rss_before_mib']:.0f} | {m['rss_started_mib']:.0f} | "
            f"{m.get('rss_served_mib', float('nan')):.0f} |"
        )
    return "\n".join(lines) + "\n"


def main_vllm(args: argparse.Namespace) -> None:
    if args.modes:  # names of bench/blend_quality.py's modes
        MODES[:] = [(m, ALL_MODES[m]) for m in args.modes]
    settings = Settings()
    dtype = settings.engine_config().dtype
    model_dir = settings.model_dir()
    builder = PromptBuilder(AutoTokenizer.from_pretrained(str(model_dir)))
    passages = args.passages[0]
    examples = datasets.musique()[: args.examples]
    prompts = []
    for ex in examples:
        docs = [f"{c['title']}\n{c['text']}" for c in ex["ctxs"][:passages]]
        prompts.append((builder.build(ex["question"], docs), builder.build(ex["question"], docs[::-1])))
    max_len = max(len(p) for _, p in prompts) + args.steps + 8
    off = VllmOptions(kv_cache_gib=2, reserved_cpus=0)
    on = VllmOptions(kv_cache_gib=2, reserved_cpus=0, prefix_caching=True)
    full = plain_phase(model_dir, dtype, max_len, off, prompts, args.steps)
    cached = plain_phase(model_dir, dtype, max_len, on, prompts, 1)
    cfg = EngineConfig(
        model_dir=model_dir, dtype=dtype, num_threads=args.threads, max_context=max_len, vllm=off
    )
    paths: list[str] = args.vllm_paths
    blended: dict[str, list[dict[str, dict[str, Any]]]] = {}
    memory: dict[str, dict[str, float]] = {}
    for path in paths:
        options = dataclasses.replace(off, blend_in_worker=PATHS[path])
        blended[path], memory[path] = backend_phase(
            dataclasses.replace(cfg, vllm=options), prompts, args.steps
        )
    rows: list[dict[str, Any]] = []
    for i, ex in enumerate(examples):
        n = len(prompts[i][1])
        ref = builder.tokenizer.decode(full[i]["tokens"], skip_special_tokens=True)
        base = {"example": i, "passages": passages, "prompt_tokens": n}
        rows.append(
            {
                **base,
                "mode": "vLLM full (prefix caching off)",
                "ttft_s": full[i]["ttft_s"],
                "f1": best_f1(ref, ex["answers"]),
                "rouge_l": 1.0,
                "first_token": 1.0,
                "computed_share": 1.0,
            }
        )
        rows.append(
            {
                **base,
                "mode": "vLLM prefix caching, reordered",
                "ttft_s": cached[i]["ttft_s"],
                "f1": float("nan"),
                "rouge_l": float("nan"),
                "first_token": float("nan"),
                "computed_share": float("nan"),
            }
        )
        for path, name, result in [(p, m, r) for p in paths for m, r in blended[p][i].items()]:
            text = builder.tokenizer.decode(result["tokens"], skip_special_tokens=True)
            usage = result["usage"]
            rows.append(
                {
                    **base,
                    "mode": name + path_suffix(path, paths),
                    "ttft_s": result["ttft_s"],
                    "f1": best_f1(text, ex["answers"]),
                    "rouge_l": rouge_l(text, ref),
                    "first_token": float(result["tokens"][:1] == full[i]["tokens"][:1]),
                    "computed_share": (n - usage["cached_tokens"] + usage["recomputed_tokens"]) / n,
                    "blend_ms": result["timings"].get("blend_ms", 0.0),
                    "handoff_ms": result["timings"].get("handoff_ms", 0.0),
                    "text": text,
                }
            )
        for r in rows[-(len(paths) * len(MODES) + 2) :]:
            r["ttft_ratio"] = r["ttft_s"] / full[i]["ttft_s"]
            r["ttft_vs_prefix_cache"] = r["ttft_s"] / cached[i]["ttft_s"]
    meta = {
        "examples": len(examples),
        "passages": passages,
        "steps": args.steps,
        "dtype": dtype,
        "machine": machine(),
        "engine": "vllm-cpu 0.32.0, enforce_eager, VLLM_CPU_NUM_OF_RESERVED_CPU=0",
        "serving_process_memory": memory,
        "load_average": Path("/proc/loadavg").read_text().split()[:3],
    }
    summary = summarize(rows, paths)
    text = table(summary, meta) + memory_table(memory)
    write_results(args.name, {"meta": meta, "summary": summary, "rows": rows}, text)
    plot([s for s in summary if s["rouge_l"] == s["rouge_l"]], RESULTS / f"{args.name}.png")
    print(text)
