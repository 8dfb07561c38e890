"""Blend modes side by side on MuSiQue: answer quality against the full prefill, and TTFT.

For each example, passages are chunks whose caches are computed alone (after the system prefix), as in
the CacheBlend setting; the prompt is 6 or 10 passages plus the question. Every mode prefills the same
token ids; the full prefill's greedy answer is the reference. Reported per mode: answer F1 against the
gold answers, ROUGE-L / first-token / greedy-token agreement with the full prefill's answer, the drop
in mean log-probability of the full prefill's answer under the mode's cache (teacher forcing; a smooth
fidelity measure), the median TTFT ratio to the full prefill of the same prompt, and the share of
prompt tokens computed (recomputed cached tokens plus uncached ones).

Rerun:  .venv/bin/python -m bench.blend_quality            (--examples 12, --quick for 3)
Writes: bench/results/blend_quality.{json,md,png}
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bench import datasets
from bench.common import RESULTS, machine, write_results
from bench.metrics import best_f1, rouge_l
from engine.blend.options import BlendOptions, GateConfig
from engine.config import EngineConfig
from engine.kv_cache import KVCache
from engine.torch_engine import TorchEngine
from server.settings import Settings

ALL_MODES: dict[str, BlendOptions] = {
    "prefix": BlendOptions(mode="prefix"),
    "reuse": BlendOptions(mode="reuse"),
    "cacheblend r=0.15": BlendOptions(mode="cacheblend", ratio=0.15),
    "cacheblend r=0.30": BlendOptions(mode="cacheblend", ratio=0.30),
    "cachecraft r=0.15": BlendOptions(mode="cachecraft", ratio=0.15),
    "probe r=0.15": BlendOptions(mode="probe", ratio=0.15),
    "probe r=0.15 T=1": BlendOptions(mode="probe", ratio=0.15, reuse_temperature=1.0),
    "probe r=0.20": BlendOptions(mode="probe", ratio=0.20),
    "probe r=0.25": BlendOptions(mode="probe", ratio=0.25),
    "probe r=0.30": BlendOptions(mode="probe", ratio=0.30),
    "probe adaptive <=0.30": BlendOptions(mode="probe", ratio=0.30, min_ratio=0.05, error_target=0.5),
}
DEFAULT_MODES = ["reuse", "cachecraft r=0.15", "probe r=0.15", "probe r=0.30"]
MODES: list[tuple[str, BlendOptions]] = [(m, ALL_MODES[m]) for m in DEFAULT_MODES]


def greedy(
    engine: TorchEngine, kv: KVCache, logits: torch.Tensor, steps: int
) -> tuple[list[int], list[float]]:
    tokens, logps = [], []
    for _ in range(steps):
        token = int(logits.argmax())
        logps.append(float(torch.log_softmax(logits, -1)[token]))
        tokens.append(token)
        if token in engine.eos_ids:
            break
        logits = engine.model.forward(torch.tensor([token]), kv)
    return tokens, logps


def teacher_forced_logp(engine: TorchEngine, kv: KVCache, logits: torch.Tensor, ref: list[int]) -> float:
    """Mean log-probability of `ref` continuing from (kv, logits); kv is restored afterwards."""
    start = kv.length
    steps = [logits[None]]
    if len(ref) > 1:
        steps.append(engine.model.forward(torch.tensor(ref[:-1]), kv, all_logits=True))
    kv.length = start
    logp = torch.log_softmax(torch.cat(steps), -1)
    return float(logp[torch.arange(len(ref)), torch.tensor(ref)].mean())


def first_kl(full: torch.Tensor, other: torch.Tensor) -> float:
    """KL(full || other) of the first answer token's distribution, in nats."""
    p, q = torch.log_softmax(full.float(), -1), torch.log_softmax(other.float(), -1)
    return float((p.exp() * (p - q)).sum())


def no_context_f1(engine: TorchEngine, example: dict[str, Any], steps: int) -> float:
    """Answer F1 with no passages at all: the floor PGR measures from."""
    prompt = engine.build_prompt(example["question"], None, None)
    kv = engine.model.new_cache(len(prompt) + steps + 1)
    logits = engine.model.forward(torch.tensor(prompt.ids), kv)
    out, _ = greedy(engine, kv, logits, steps)
    text = engine.tokenizer.decode(out, skip_special_tokens=True)
    assert isinstance(text, str)
    return best_f1(text, example["answers"])


def run_example(
    engine: TorchEngine, example: dict[str, Any], passages: int, steps: int, tag: str
) -> list[dict]:
    docs = [f"{c['title']}\n{c['text']}" for c in example["ctxs"][:passages]]
    prompt = engine.build_prompt(example["question"], docs, None)
    n = len(prompt)
    salt = f"bench-{tag}"
    warm = BlendOptions(mode="reuse")  # store every passage's own cache (not timed)
    engine.blender.write_back(prompt, engine.blender.prefill(prompt, warm, n + 1, salt), warm, salt)

    start = time.perf_counter()
    kv = engine.model.new_cache(n + steps + 1)
    logits = engine.model.forward(torch.tensor(prompt.ids), kv)
    int(logits.argmax())
    full_ttft = time.perf_counter() - start
    ref, ref_logps = greedy(engine, kv, logits, steps)
    ref_text = engine.tokenizer.decode(ref, skip_special_tokens=True)
    assert isinstance(ref_text, str)  # one sequence of ids decodes to one string
    rows = [
        {
            "mode": "full",
            "tokens": n,
            "ttft_s": full_ttft,
            "ttft_ratio": 1.0,
            "computed_share": 1.0,
            "f1": best_f1(ref_text, example["answers"]),
            "rouge_l": 1.0,
            "first_token": 1.0,
            "token_agree": 1.0,
            "logp_drop": 0.0,
            "kl_first": 0.0,
            "f1_no_context": no_context_f1(engine, example, steps),
            "text": ref_text,
        }
    ]
    full_first = logits
    full_logp = statistics.fmean(ref_logps)
    for name, opts in MODES:
        start = time.perf_counter()
        result = engine.blender.prefill(prompt, opts, n + steps + 1, salt)
        int(result.logits.argmax())
        ttft = time.perf_counter() - start
        logp = teacher_forced_logp(engine, result.kv, result.logits, ref)
        out, _ = greedy(engine, result.kv, result.logits, steps)
        text = engine.tokenizer.decode(out, skip_special_tokens=True)
        assert isinstance(text, str)
        agree = sum(a == b for a, b in zip(out, ref, strict=False)) / max(len(ref), len(out))
        computed = n - result.cached_tokens + result.recomputed_tokens
        rows.append(
            {
                "mode": name,
                "tokens": n,
                "ttft_s": ttft,
                "ttft_ratio": ttft / full_ttft,
                "computed_share": computed / n,
                "f1": best_f1(text, example["answers"]),
                "rouge_l": rouge_l(text, ref_text),
                "first_token": float(out[:1] == ref[:1]),
                "token_agree": agree,
                "logp_drop": full_logp - logp,
                "kl_first": first_kl(full_first, result.logits),
                "ratio_used": result.ratio_used,
                "probe_ms": result.probe_ms,
                "text": text,
            }
        )
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    out = []
    for passages in sorted({r["passages"] for r in rows}):
        full = [r for r in rows if r["passages"] == passages and r["mode"] == "full"]
        f1_full = statistics.fmean(r["f1"] for r in full)
        f1_none = statistics.fmean(r["f1_no_context"] for r in full)
        for mode in ["full"] + [m for m, _ in MODES]:
            sel = [r for r in rows if r["passages"] == passages and r["mode"] == mode]
            f1 = statistics.fmean(r["f1"] for r in sel)
            # PGR = (score - no context) / (full - no context); undefined when context does not help
            gap = f1_full - f1_none
            out.append(
                {
                    "passages": passages,
                    "mode": mode,
                    "n": len(sel),
                    "tokens": round(statistics.fmean(r["tokens"] for r in sel)),
                    "f1": f1,
                    "f1_no_context": f1_none,
                    "pgr": (f1 - f1_none) / gap if abs(gap) > 1e-9 else None,
                    "kl_first": statistics.fmean(r["kl_first"] for r in sel),
                    "ratio_used": statistics.fmean(r.get("ratio_used", 1.0) for r in sel),
                    "rouge_l": statistics.fmean(r["rouge_l"] for r in sel),
                    "first_token": statistics.fmean(r["first_token"] for r in sel),
                    "token_agree": statistics.fmean(r["token_agree"] for r in sel),
                    "logp_drop": statistics.fmean(r["logp_drop"] for r in sel),
                    "ttft_s": statistics.median(r["ttft_s"] for r in sel),
                    "ttft_ratio": statistics.median(r["ttft_ratio"] for r in sel),
                    "computed_share": statistics.fmean(r["computed_share"] for r in sel),
                }
            )
    return out


def table(summary: list[dict], meta: dict) -> str:
    lines = [
        "# Blend modes on MuSiQue (musique_dev.json)",
        "",
        f"{meta['examples']} examples, greedy {meta['steps']} tokens, dtype {meta['dtype']}, "
        f"machine {meta['machine']}.",
        "TTFT ratio: median over examples of (mode TTFT / full-prefill TTFT of the same prompt), one run",
        "(probe modes: the probe pass is inside TTFT). F1 against the gold answers; PGR = (F1 - F1 with no",
        "passages) / (F1 of full - F1 with no passages); KL: first answer token, full || mode;",
        "ratio: recomputed share of the moved cached tokens.",
        f"Command: `{meta.get('command', '')}`",
        "",
        "| passages | mode | prompt tokens | F1 | PGR | ROUGE-L vs full | first token | greedy agree | "
        "logp drop | "
        "KL first | TTFT s | TTFT / full | ratio | computed share |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in summary:
        pgr = "n/a" if s["pgr"] is None else f"{s['pgr']:.2f}"
        lines.append(
            f"| {s['passages']} | {s['mode']} | {s['tokens']} | {s['f1']:.3f} | {pgr} | {s['rouge_l']:.3f} | "
            f"{s['first_token']:.2f} | {s['token_agree']:.2f} | {s['logp_drop']:.3f} | {s['kl_first']:.3f} | "
            f"{s['ttft_s']:.2f} | {s['ttft_ratio']:.3f} | {s['ratio_used']:.3f} | {s['computed_share']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def plot(summary: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({s["passages"] for s in summary})
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for ax, passages in zip(axes[0], panels, strict=True):
        for s in (s for s in summary if s["passages"] == passages):
            ax.scatter(s["ttft_ratio"], s["rouge_l"], s=60)
            ax.annotate(
                s["mode"],
                (s["ttft_ratio"], s["rouge_l"]),
                fontsize=8,
                xytext=(4, 4),
                textcoords="offset points",
            )
        ax.set_xlabel("TTFT / full prefill (median)")
        ax.set_ylabel("ROUGE-L vs full-prefill answer")
        ax.set_title(f"{passages} passages")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=12)
    parser.add_argument("--passages", type=int, nargs="+", default=[6, 10])
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="3 examples, 6 passages, 16 tokens")
    parser.add_argument("--name", default="blend_quality", help="results file name (bench/results/NAME.*)")
    parser.add_argument("--modes", nargs="+", choices=list(ALL_MODES), help=f"default: {DEFAULT_MODES}")
    parser.add_argument(
        "--engine", choices=["torch", "vllm"], default="torch", help="vllm: bench/blend_quality_vllm.py"
    )
    parser.add_argument(
        "--vllm-paths",
        nargs="+",
        choices=["worker", "here"],
        default=["worker"],
        help="with --engine vllm: where the backend blends (RAGBLEND_VLLM_BLEND_IN_WORKER true/false)",
    )
    datasets.add_data_option(parser)
    args = parser.parse_args()
    datasets.use_data(args.data, datasets.MUSIQUE)
    if args.engine == "vllm":
        from bench.blend_quality_vllm import main_vllm

        if args.name == "blend_quality":
            args.name = "blend_quality_vllm"
        if args.quick:
            args.examples, args.passages, args.steps = 2, [6], 16
        main_vllm(args)
        return
    if args.quick:
        args.examples, args.passages, args.steps = 3, [6], 16
    if args.modes:
        MODES[:] = [(m, ALL_MODES[m]) for m in args.modes]
    # the server's dtype choice for this machine (remembered in the data dir), not a fresh probe
    settings = Settings()
    dtype = settings.engine_config().dtype
    # no correctness gate: the benchmark measures the modes themselves, the default included
    engine = TorchEngine(
        EngineConfig(
            model_dir=settings.model_dir(),
            dtype=dtype,
            num_threads=args.threads,
            blend_gate=GateConfig(False),
        )
    )
    examples = datasets.musique()[: args.examples]
    rows: list[dict] = []
    text = ""
    for passages in args.passages:
        for i, example in enumerate(examples):
            for row in run_example(engine, example, passages, args.steps, f"{passages}-{i}"):
                rows.append({**row, "passages": passages, "example": i})
            print(f"{passages} passages, example {i + 1}/{len(examples)} done", flush=True)
            # written after every example, so an interrupted run still leaves what it measured
            done = {p: len({r["example"] for r in rows if r["passages"] == p}) for p in args.passages}
            meta = {
                "examples": ", ".join(f"{n} at {p} passages" for p, n in done.items() if n),
                "steps": args.steps,
                "dtype": engine.dtype_name,
                "machine": machine(),
                "command": "python -m bench.blend_quality " + " ".join(sys.argv[1:]),
            }
            summary = summarize(rows)
            text = table(summary, meta)
            write_results(args.name, {"meta": meta, "summary": summary, "rows": rows}, text)
            plot(summary, RESULTS / f"{args.name}.png")
    print(text)


if __name__ == "__main__":
    main()
