"""Time to first token of mode `full` against the blend modes on the torch engine's device.

For each model and prompt length: a prompt of a system-like prefix, documents of `--chunk` tokens and
a question, with random token ids (timings only: nothing here measures answer quality). Every
document's base cache is computed first and stored in an in-process store (host copies, as the
engine keeps them), then the documents are asked in reversed order, so every blend mode reuses moved
caches. TTFT is the prefill to the first token's logits (lookup, upload, recompute), the median of
`--repeats` after one warm-up run, the device synchronised before the clock is read.

Models: `embedded` (the embedded SmolLM2, real weights, context 8k), `llama8b` (randomly initialised
weights of Llama-3.1-8B's shape, bf16, GPU only: 16 GB) and `tiny` (a small random Llama for CPUs).

    python -m bench.gpu_ttft --models embedded,llama8b --lengths 2048,8192,32768
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.common import RESULTS, machine, write_results
from cache.memory_tier import MemoryTier
from engine.blend.blender import Blender
from engine.blend.chunk_cache import ChunkCache
from engine.blend.options import BlendOptions
from engine.config import EngineConfig, ModelConfig
from engine.device import device_name, resolve_device, synchronize
from engine.model import LlamaModel
from engine.prompt import Prompt, PromptPiece

LLAMA_8B: dict[str, Any] = {  # Llama-3.1-8B's config.json, the fields the engine reads
    "model_type": "llama",
    "vocab_size": 128256,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "rope_scaling": {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
    "max_position_embeddings": 131072,
    "tie_word_embeddings": False,
}
TINY: dict[str, Any] = {
    **LLAMA_8B,
    "vocab_size": 4096,
    "hidden_size": 256,
    "intermediate_size": 768,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "rope_scaling": None,
    "max_position_embeddings": 65536,
}
MODES = ("full", "reuse", "cacheblend", "cachecraft", "probe")


@dataclass
class Bench:
    name: str
    model: LlamaModel
    blender: Blender
    max_context: int


def random_model(raw: dict[str, Any], device: torch.device, dtype: torch.dtype, positions: int) -> LlamaModel:
    """A Llama of `raw`'s shape with random weights made on `device` (no checkpoint needed)."""
    cfg = ModelConfig.from_dict(raw)
    gen = torch.Generator(device=device).manual_seed(0)

    def w(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, generator=gen, device=device, dtype=torch.float32) * 0.02).to(dtype)

    h, kv = cfg.hidden_size, cfg.num_kv_heads * cfg.head_dim
    tensors = {
        "embed_tokens.weight": w(cfg.vocab_size, h),
        "norm.weight": torch.ones(h, device=device, dtype=dtype),
    }
    tensors["lm_head.weight"] = w(cfg.vocab_size, h)
    for i in range(cfg.num_layers):
        p = f"layers.{i}."
        tensors[p + "input_layernorm.weight"] = torch.ones(h, device=device, dtype=dtype)
        tensors[p + "post_attention_layernorm.weight"] = torch.ones(h, device=device, dtype=dtype)
        tensors[p + "self_attn.q_proj.weight"] = w(cfg.num_heads * cfg.head_dim, h)
        tensors[p + "self_attn.k_proj.weight"] = w(kv, h)
        tensors[p + "self_attn.v_proj.weight"] = w(kv, h)
        tensors[p + "self_attn.o_proj.weight"] = w(h, cfg.num_heads * cfg.head_dim)
        tensors[p + "mlp.gate_proj.weight"] = w(cfg.intermediate_size, h)
        tensors[p + "mlp.up_proj.weight"] = w(cfg.intermediate_size, h)
        tensors[p + "mlp.down_proj.weight"] = w(h, cfg.intermediate_size)
    return LlamaModel(cfg, tensors, positions)


def load_bench(name: str, device: torch.device, max_len: int) -> Bench:
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    dtype_name = "bfloat16" if dtype == torch.bfloat16 else "float32"
    if name == "embedded":
        from server.settings import Settings

        model_dir = Settings().model_dir()
        cfg = ModelConfig.from_dir(model_dir)
        positions = cfg.max_position_embeddings
        model = LlamaModel.load(
            model_dir, cfg, EngineConfig(model_dir, dtype=dtype_name).torch_dtype, positions, device
        )
    else:
        raw = LLAMA_8B if name == "llama8b" else TINY
        positions = min(int(raw["max_position_embeddings"]), max_len + 64)
        model = random_model(raw, device, dtype, positions)
    cache = ChunkCache(MemoryTier(24 << 30), model.cfg, f"bench-{name}", dtype_name)
    return Bench(name, model, Blender(model, cache), positions)


def random_prompt(vocab: int, length: int, chunk: int, seed: int) -> Prompt:
    gen = torch.Generator().manual_seed(seed)

    def ids(n: int) -> tuple[int, ...]:
        return tuple(int(t) for t in torch.randint(10, vocab - 10, (n,), generator=gen))

    prefix, query = ids(32), ids(32)
    n_docs = max(1, -(-(length - 64) // chunk))  # documents enough to reach `length` tokens
    docs = [PromptPiece("document", ids(chunk), "") for _ in range(n_docs)]
    return Prompt((PromptPiece("prefix", prefix, ""), *docs, PromptPiece("query", query, "")))


def reordered(prompt: Prompt) -> Prompt:
    pieces = prompt.pieces
    return Prompt((pieces[0], *reversed(pieces[1:-1]), pieces[-1]))


def ttft_s(bench: Bench, prompt: Prompt, mode: str, salt: str) -> float:
    device = bench.model.device
    synchronize(device)
    started = time.perf_counter()
    if mode == "full":
        logits = bench.model.forward(torch.tensor(prompt.ids), bench.model.new_cache(len(prompt) + 1))
    else:
        logits = bench.blender.prefill(prompt, BlendOptions(mode=mode), len(prompt) + 1, salt).logits  # type: ignore[arg-type]
    int(logits.argmax())  # the first token, on the host: waits for the device
    synchronize(device)
    return time.perf_counter() - started


def run_length(bench: Bench, length: int, chunk: int, modes: list[str], repeats: int) -> dict[str, Any]:
    prompt = random_prompt(bench.model.cfg.vocab_size, length, chunk, seed=length)
    salt = f"len-{length}"
    started = time.perf_counter()
    bench.blender.cache.put_many(bench.blender.precompute(prompt, bench.blender.lookup(prompt, salt), salt))
    precompute_s = time.perf_counter() - started
    asked = reordered(prompt)
    row: dict[str, Any] = {
        "model": bench.name,
        "tokens": len(asked),
        "chunk": chunk,
        "precompute_s": precompute_s,
    }
    for mode in modes:
        ttft_s(bench, asked, mode, salt)  # warm-up: kernels, allocator
        times = [ttft_s(bench, asked, mode, salt) for _ in range(repeats)]
        row[f"{mode}_ms"] = statistics.median(times) * 1000
    for mode in modes:
        if mode != "full" and "full_ms" in row:
            row[f"{mode}_x"] = row[f"{mode}_ms"] / row["full_ms"]
    return row


def table(rows: list[dict[str, Any]], modes: list[str], device: str, skipped: list[str]) -> str:
    head = (
        "| model | tokens | "
        + " | ".join(f"{m} ms" for m in modes)
        + " | "
        + " | ".join(f"{m} / full" for m in modes if m != "full")
    )
    lines = [
        f"# TTFT on {device}: full against the blend modes (random token ids; timings only)",
        "",
        head + " |",
    ]
    lines.append("|" + " --- |" * (2 + len(modes) + len(modes) - 1))
    for r in rows:
        ms = " | ".join(f"{r[f'{m}_ms']:.1f}" for m in modes)
        ratios = " | ".join(f"{r.get(f'{m}_x', float('nan')):.2f}x" for m in modes if m != "full")
        lines.append(f"| {r['model']} | {r['tokens']} | {ms} | {ratios} |")
    if skipped:
        lines += ["", "Skipped:", *[f"- {s}" for s in skipped]]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], modes: list[str], device: str, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    models = sorted({r["model"] for r in rows})
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4), squeeze=False)
    for ax, name in zip(axes[0], models, strict=True):
        mine = [r for r in rows if r["model"] == name]
        for mode in modes:
            ax.plot([r["tokens"] for r in mine], [r[f"{mode}_ms"] for r in mine], marker="o", label=mode)
        ax.set(
            title=f"{name} on {device}", xlabel="prompt tokens", ylabel="TTFT ms", xscale="log", yscale="log"
        )
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--models", default="embedded,llama8b")
    ap.add_argument("--lengths", default="2048,8192,32768")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--chunk", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--name", default=None, help="result file name (default gpu_ttft, or gpu_ttft_cpu)")
    ap.add_argument("--results-dir", type=Path, default=RESULTS)
    args = ap.parse_args()
    device = resolve_device(args.device)
    modes = args.modes.split(",")
    lengths = [int(x) for x in args.lengths.split(",")]
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    for name in args.models.split(","):
        if name == "llama8b" and device.type != "cuda":
            skipped.append("llama8b: random Llama-3.1-8B-shaped weights need a GPU (16 GB of bf16)")
            continue
        try:
            bench = load_bench(name, device, max(lengths))
        except FileNotFoundError as exc:  # the embedded model is converted from a package, maybe absent
            skipped.append(f"{name}: {exc}")
            continue
        for length in lengths:
            if length + 1 > bench.max_context:
                skipped.append(
                    f"{name} at {length} tokens: beyond the model's context of {bench.max_context}"
                )
                continue
            row = run_length(bench, length, args.chunk, modes, args.repeats)
            print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
            rows.append(row)
            save(args, device, modes, rows, skipped)  # after every length: a run cut short keeps its rows
        del bench
        if device.type == "cuda":
            torch.cuda.empty_cache()
    save(args, device, modes, rows, skipped)
    for s in skipped:
        print("skipped:", s)


def save(
    args: argparse.Namespace,
    device: torch.device,
    modes: list[str],
    rows: list[dict[str, Any]],
    skipped: list[str],
) -> None:
    label = device_name(device)
    name = args.name or ("gpu_ttft" if device.type == "cuda" else "gpu_ttft_cpu")
    if rows and not plot(rows, modes, label, args.results_dir / f"{name}.png"):
        skipped = [*skipped, "the plot: matplotlib is not installed"]
    payload = {"device": label, "machine": machine(), "modes": modes, "rows": rows, "skipped": skipped}
    write_results(name, payload, table(rows, modes, label, skipped), args.results_dir)


if __name__ == "__main__":
    main()
