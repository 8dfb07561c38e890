"""Ablation of the probe mode's parts on MuSiQue development questions: each variant's teacher-forced
log-prob drop of the full prefill's greedy answer, first-token agreement and KL, and its TTFT against
the full prefill of the same prompt (probe included). No greedy decode per variant: the log-prob drop is
the smooth measure, and the references are computed once per example.

Rerun:  .venv/bin/python -m bench.blend_ablation --examples 6 --passages 6
Writes: bench/results/blend_ablation.{json,md,png}
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from bench import datasets
from bench.blend_quality import greedy, teacher_forced_logp
from bench.common import RESULTS, machine, write_results
from engine.blend.options import BlendOptions, GateConfig
from engine.config import EngineConfig
from engine.torch_engine import TorchEngine
from server.settings import Settings

P = BlendOptions(mode="probe", ratio=0.15)
VARIANTS: dict[str, BlendOptions] = {
    "reuse": BlendOptions(mode="reuse"),
    "cachecraft r=0.15": BlendOptions(mode="cachecraft", ratio=0.15),
    "probe r=0.15": P,  # the default: T = PROBE_TEMPERATURE since the temperature ablation
    "probe no sinks": replace(P, sink_tokens=0),
    "probe sinks 16": replace(P, sink_tokens=16),
    "probe global budget": replace(P, budget_gamma=0.0),
    "probe gamma 2": replace(P, budget_gamma=2.0),
    "probe no widen": replace(P, widen=0),
    "probe widen 3": replace(P, widen=3),
    "probe full layers 0": replace(P, full_layers=0),
    "probe full layers 2": replace(P, full_layers=2),
    "probe r=0.10": replace(P, ratio=0.10),
    "probe r=0.20": replace(P, ratio=0.20),
    "probe r=0.30": replace(P, ratio=0.30),
    "probe score from L/3": replace(P, probe_from=10),
    "probe score from 2L/3": replace(P, probe_from=20),
    "probe craft 1": replace(P, craft_weight=1.0),
    "probe craft 0.5": replace(P, craft_weight=0.5),
    "probe full layers 2 dev 1": replace(P, full_layers=2, deviation_weight=1.0),
    "probe full layers 2 dev 0.5": replace(P, full_layers=2, deviation_weight=0.5),
    "probe full layers 3 dev 1": replace(P, full_layers=3, deviation_weight=1.0),
    "reuse T 0.9": BlendOptions(mode="reuse", reuse_temperature=0.9),
    "reuse T 1.1": BlendOptions(mode="reuse", reuse_temperature=1.1),
    "probe T 1.0": replace(P, reuse_temperature=1.0),
    "probe T 0.8": replace(P, reuse_temperature=0.8),
    "probe T 0.9": replace(P, reuse_temperature=0.9),
    "probe T 1.1": replace(P, reuse_temperature=1.1),
    "probe T 1.2": replace(P, reuse_temperature=1.2),
    "reuse T 1.2": BlendOptions(mode="reuse", reuse_temperature=1.2),
    "reuse T 1.3": BlendOptions(mode="reuse", reuse_temperature=1.3),
    "reuse T 1.5": BlendOptions(mode="reuse", reuse_temperature=1.5),
    "probe T 1.05": replace(P, reuse_temperature=1.05),
    "probe T 1.15": replace(P, reuse_temperature=1.15),
    "probe r=0.30 T 1.1": replace(P, ratio=0.30, reuse_temperature=1.1),
    "probe T slope 0.2": replace(P, temperature_slope=0.2),
    "probe T slope 0.4": replace(P, temperature_slope=0.4),
    "probe T slope -0.2": replace(P, temperature_slope=-0.2),
    "probe T slope 0.8": replace(P, temperature_slope=0.8),
    "probe T 1.2 slope 0.4": replace(P, reuse_temperature=1.2, temperature_slope=0.4),
    "probe T 1.2 slope 0.8": replace(P, reuse_temperature=1.2, temperature_slope=0.8),
}


def kl_first(full: torch.Tensor, other: torch.Tensor) -> float:
    p = torch.log_softmax(full.float(), -1)
    q = torch.log_softmax(other.float(), -1)
    return float((p.exp() * (p - q)).sum())


def table(summary: list[dict], meta: dict) -> str:
    lines = [
        "# Probe-mode ablation on MuSiQue development questions",
        "",
        f"{meta['examples']} examples x {meta['passages']} passages, reference = full prefill's greedy "
        f"{meta['steps']} tokens, dtype {meta['dtype']}, machine {meta['machine']}.",
        f"Command: `{meta['command']}`",
        "",
        "TTFT / full is wall time on a shared, loaded machine (noisy); computed share = rows computed "
        "(uncached + recomputed) / prompt tokens; compute share = row-layers computed, probe and "
        "full leading layers included, / a full prefill's (BlendResult.compute_share).",
        "",
        "| variant | logp drop | first token | KL first | TTFT / full | recomputed share | computed share "
        "| compute share |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in summary:
        lines.append(
            f"| {s['variant']} | {s['logp_drop']:.3f} | {s['first_token']:.2f} | {s['kl_first']:.3f} | "
            f"{s['ttft_ratio']:.3f} | {s['ratio_used']:.3f} | {s['computed_share']:.3f} | "
            f"{s['compute_share']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def plot(summary: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for s in summary:
        ax.scatter(s["ttft_ratio"], s["logp_drop"], s=40)
        ax.annotate(
            s["variant"],
            (s["ttft_ratio"], s["logp_drop"]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.set_xlabel("TTFT / full prefill (median)")
    ax.set_ylabel("log-prob drop (nats/token)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=6)
    parser.add_argument("--offset", type=int, default=0, help="first example index")
    parser.add_argument("--passages", type=int, default=6)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", nargs="*", help="names from VARIANTS (default all)")
    parser.add_argument("--name", default="blend_ablation")
    datasets.add_data_option(parser)
    args = parser.parse_args()
    datasets.use_data(args.data, datasets.MUSIQUE)

    settings = Settings()
    engine = TorchEngine(
        EngineConfig(
            model_dir=settings.model_dir(),
            dtype=settings.engine_config().dtype,
            num_threads=args.threads,
            blend_gate=GateConfig(False),
        )
    )
    examples = datasets.musique()[args.offset : args.offset + args.examples]
    refs = []
    for i, ex in enumerate(examples):
        docs = [f"{c['title']}\n{c['text']}" for c in ex["ctxs"][: args.passages]]
        prompt = engine.build_prompt(ex["question"], docs, None)
        salt = f"ablate-{args.passages}-{args.offset + i}"
        warm = BlendOptions(mode="reuse")
        engine.blender.write_back(
            prompt, engine.blender.prefill(prompt, warm, len(prompt) + 1, salt), warm, salt
        )
        n = len(prompt)
        start = time.perf_counter()
        kv = engine.model.new_cache(n + args.steps + 1)
        logits = engine.model.forward(torch.tensor(prompt.ids), kv)
        int(logits.argmax())
        ttft = time.perf_counter() - start
        ref, logps = greedy(engine, kv, logits, args.steps)
        refs.append((prompt, salt, ttft, logits, ref, statistics.fmean(logps)))
        print(f"reference {i + 1}/{len(examples)}: {n} tokens, {ttft:.2f} s", flush=True)
    names = args.variants or list(VARIANTS)
    rows: list[dict] = []
    summary: list[dict] = []
    for name in names:
        opts = VARIANTS[name]
        for i, (prompt, salt, full_ttft, full_logits, ref, full_logp) in enumerate(refs):
            n = len(prompt)
            start = time.perf_counter()
            result = engine.blender.prefill(prompt, opts, n + args.steps + 1, salt)
            int(result.logits.argmax())
            ttft = time.perf_counter() - start
            logp = teacher_forced_logp(engine, result.kv, result.logits, ref)
            rows.append(
                {
                    "variant": name,
                    "example": args.offset + i,
                    "logp_drop": full_logp - logp,
                    "first_token": float(int(result.logits.argmax()) == ref[0]),
                    "kl_first": kl_first(full_logits, result.logits),
                    "ttft_ratio": ttft / full_ttft,
                    "ratio_used": result.ratio_used,
                    "probe_ms": result.probe_ms,
                    "computed_share": (n - result.cached_tokens + result.recomputed_tokens) / n,
                    "compute_share": result.compute_share(len(engine.model.layers)),
                }
            )
        sel = [r for r in rows if r["variant"] == name]
        summary.append(
            {
                "variant": name,
                "logp_drop": statistics.fmean(r["logp_drop"] for r in sel),
                "first_token": statistics.fmean(r["first_token"] for r in sel),
                "kl_first": statistics.fmean(r["kl_first"] for r in sel),
                "ttft_ratio": statistics.median(r["ttft_ratio"] for r in sel),
                "ratio_used": statistics.fmean(r["ratio_used"] for r in sel),
                "computed_share": statistics.fmean(r["computed_share"] for r in sel),
                "compute_share": statistics.fmean(r["compute_share"] for r in sel),
            }
        )
        s = summary[-1]
        print(
            f"{name}: drop {s['logp_drop']:.3f} first {s['first_token']:.2f} kl {s['kl_first']:.3f} "
            f"ttft {s['ttft_ratio']:.3f} ratio {s['ratio_used']:.3f} compute {s['compute_share']:.3f}",
            flush=True,
        )
        meta = {
            "examples": len(refs),
            "offset": args.offset,
            "passages": args.passages,
            "steps": args.steps,
            "dtype": engine.dtype_name,
            "machine": machine(),
            "command": "python -m bench.blend_ablation " + " ".join(sys.argv[1:]),
        }
        text = table(summary, meta)
        write_results(args.name, {"meta": meta, "summary": summary, "rows": rows}, text)
        plot(summary, RESULTS / f"{args.name}.png")


if __name__ == "__main__":
    main()
