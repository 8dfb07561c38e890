"""The torch engine on a GPU: the same answers as on the CPU, chunk caches kept on the host in the
store and uploaded for each blend. Run by bench/gpu_check.sh; skipped where torch sees no GPU."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from cache.memory_tier import MemoryTier
from engine.blend.options import BlendOptions, GateConfig
from engine.blend.placement import Placement, place_entries, place_entry
from engine.config import EngineConfig
from engine.events import FinishEvent, TokenEvent
from engine.loaded_model import LoadedModel
from engine.sampling import SamplingParams
from engine.torch_engine import TorchEngine
from server.settings import Settings
from tests.texts import rag_docs

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def model_dir() -> Path:
    """The embedded model; a GPU machine without it (it is converted from a package) skips, saying so."""
    try:
        return Settings().model_dir()
    except FileNotFoundError as exc:
        pytest.skip(f"the embedded model is not on this machine: {exc}")


@pytest.fixture(scope="module")
def gpu_engine(model_dir: Path) -> Iterator[TorchEngine]:
    cfg = EngineConfig(model_dir=model_dir, dtype="float32", device="cuda", blend_gate=GateConfig(False))
    engine = TorchEngine(cfg, MemoryTier(256 << 20))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def engine(model_dir: Path) -> Iterator[TorchEngine]:
    """The same model on the CPU, the reference."""
    cfg = EngineConfig(model_dir=model_dir, dtype="float32", device="cpu", blend_gate=GateConfig(False))
    engine = TorchEngine(cfg, MemoryTier(256 << 20))
    yield engine
    engine.close()


def greedy(engine: TorchEngine, query: str, docs: list[str], blend: BlendOptions | None, n: int) -> list[int]:
    prompt = engine.build_prompt(query, docs, None)
    events = list(engine.generate(prompt, SamplingParams(max_tokens=n, temperature=0.0), blend=blend))
    assert isinstance(events[-1], FinishEvent)
    return [e.token_id for e in events if isinstance(e, TokenEvent)]


def test_weights_and_caches_sit_on_the_gpu(gpu_engine: TorchEngine) -> None:
    assert gpu_engine.model.device.type == "cuda" and gpu_engine.chunk_kv.device.type == "cuda"
    assert gpu_engine.model.embed.is_cuda and gpu_engine.model.layers[0].qkv_weight.is_cuda
    assert gpu_engine.model.new_cache(8).k[0].is_cuda


def test_auto_dtype_is_bfloat16_on_the_gpu(model_dir: Path) -> None:
    loaded = LoadedModel.load(EngineConfig(model_dir=model_dir, dtype="auto", device="cuda"))
    assert loaded.dtype_name == "bfloat16" and loaded.model.dtype == torch.bfloat16
    assert loaded.fingerprint.endswith("-bfloat16")


def test_prefill_logits_match_the_cpu(gpu_engine: TorchEngine, engine: TorchEngine) -> None:
    question, docs = rag_docs(0, 3, 60)
    prompt = engine.build_prompt(question, docs, None)
    ids = torch.tensor(prompt.ids)
    cpu = engine.model.forward(ids, engine.model.new_cache(len(ids)))
    gpu = gpu_engine.model.forward(ids, gpu_engine.model.new_cache(len(ids))).cpu()
    assert torch.allclose(cpu, gpu, atol=2e-3, rtol=1e-3), (cpu - gpu).abs().max()
    assert int(cpu.argmax()) == int(gpu.argmax())


def test_greedy_answer_matches_the_cpu_through_the_scheduler(
    gpu_engine: TorchEngine, engine: TorchEngine
) -> None:
    question, docs = rag_docs(1, 3, 60)
    assert greedy(gpu_engine, question, docs, None, 8) == greedy(engine, question, docs, None, 8)


@pytest.mark.parametrize("mode", ["reuse", "cacheblend", "cachecraft", "probe", "prefix"])
def test_blend_modes_on_the_gpu_reuse_host_copies(
    gpu_engine: TorchEngine, engine: TorchEngine, mode: str
) -> None:
    """Warm caches are computed on the GPU and stored as host tensors; a blended prefill on the GPU
    finds them, and its logits are those of the same blend on the CPU."""
    question, docs = rag_docs(2, 3, 60)
    salt = f"gpu-{mode}"
    for e in (gpu_engine, engine):
        e.chunk_kv.warm_up(docs, salt)
    keys = [
        lk.base_key
        for lk in gpu_engine.blender.lookup(gpu_engine.build_prompt(question, docs, None), salt)[1:]
    ]
    stored = [entry for entry in gpu_engine.store.get_many(keys) if entry is not None]
    assert stored and all(entry.k.device.type == "cpu" for entry in stored)
    opts = BlendOptions(mode=mode)  # type: ignore[arg-type]
    prompt = engine.build_prompt(question, docs[::-1], None)
    cpu = engine.blender.prefill(prompt, opts, len(prompt) + 1, salt)
    gpu = gpu_engine.blender.prefill(prompt, opts, len(prompt) + 1, salt)
    assert gpu.cached_tokens == cpu.cached_tokens > 0
    assert torch.allclose(cpu.logits, gpu.logits.cpu(), atol=5e-3, rtol=1e-3)


def test_layered_upload_places_like_the_cpu(gpu_engine: TorchEngine, engine: TorchEngine) -> None:
    cfg = engine.model_config
    shape = (cfg.num_layers, cfg.num_kv_heads, 12, cfg.head_dim)
    gen = torch.Generator().manual_seed(0)
    chunks = [
        Placement(torch.randn(shape, generator=gen), torch.randn(shape, generator=gen), s, t, scale)
        for s, t, scale in ((5, 9, 1.0), (3, 30, 1 / 1.1))
    ]
    cpu = engine.model.new_cache(48)
    for c in chunks:
        place_entry(cpu, engine.model.rope, c.k, c.v, c.cached_start, c.new_start, c.key_scale)
    gpu = gpu_engine.model.new_cache(48)
    place_entries(gpu, gpu_engine.model.rope, chunks)
    gpu.wait_all()
    for layer in range(cfg.num_layers):
        for rows in (slice(9, 21), slice(30, 42)):
            assert torch.allclose(cpu.k[layer][0, :, rows], gpu.k[layer][0, :, rows].cpu(), atol=1e-5)
            assert torch.equal(cpu.v[layer][0, :, rows], gpu.v[layer][0, :, rows].cpu())
