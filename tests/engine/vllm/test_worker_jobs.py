"""Blending in vLLM's worker, without vLLM: the serving side (engine/vllm/worker_blend.py) and the
worker's job handling (engine/vllm/worker_jobs.py) wired to each other in one process, the worker's
blender running on the real embedded model. What crosses between them is what crosses between the
processes: job files and the held K/V. (With vLLM, tests/engine/vllm/test_vllm_engine.py runs this path
end to end against plain vLLM's tokens.)"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch

from cache.memory_tier import MemoryTier
from engine.blend.blender import Blender
from engine.blend.chunk_cache import ChunkCache
from engine.blend.options import BlendOptions
from engine.chunk_kv import ChunkKV
from engine.model import LlamaModel
from engine.torch_engine import TorchEngine
from engine.vllm import held
from engine.vllm.handoff import HandoffDir
from engine.vllm.prepare import InjectionPlanner
from engine.vllm.worker_blend import WorkerBlender, is_held
from engine.vllm.worker_jobs import blend_job, load_file, precompute_job, read_job, save_file
from tests.engine.test_chunk_kv import loaded_of
from tests.engine.vllm.vllm_fixtures import rag_prompts


class InProcessWorker:
    """The worker's side of the calls, on the torch engine's model (standing in for vLLM's)."""

    def __init__(self, engine: TorchEngine, directory: Path) -> None:
        unused = ChunkCache(MemoryTier(1), engine.model_config, "unused", engine.dtype_name)
        self.blender = Blender(engine.model, unused)
        self.directory = str(directory)
        self.calls: list[str] = []

    def __call__(self, method: str, *args: Any) -> Any:
        self.calls.append(method)
        if method == "ragblend_blend":
            return blend_job(self.blender, read_job(args[0], self.directory))
        if method == "ragblend_precompute":
            out = Path(args[0]).with_suffix(".out")
            return precompute_job(self.blender, read_job(args[0], self.directory), out)
        raise AssertionError(f"unexpected call {method}")


@pytest.fixture
def handoff(tmp_path: Path) -> HandoffDir:
    return HandoffDir(str(tmp_path))


def test_the_serving_side_holds_no_weights(engine: TorchEngine) -> None:
    shell = LlamaModel.shell(engine.model_config, engine.model.dtype, 64)
    assert shell.embed.numel() == 0 and shell.layers == [] and shell.rope.max_positions == 64
    with pytest.raises(IndexError):
        shell.forward(torch.tensor([1, 2]), shell.new_cache(4))


def test_warm_up_and_blend_in_the_worker_equal_the_blend_here(
    engine: TorchEngine, handoff: HandoffDir
) -> None:
    worker = InProcessWorker(engine, handoff.path)
    shell = LlamaModel.shell(engine.model_config, engine.model.dtype, engine.max_context)
    loaded = dataclasses.replace(loaded_of(engine), model=shell)
    remote: list[WorkerBlender] = []

    def make(model: LlamaModel, cache: ChunkCache) -> Blender:
        remote.append(WorkerBlender(model, cache, worker, handoff.path))
        return remote[0]

    store = MemoryTier(256 << 20)
    chunk_kv = ChunkKV(loaded, store, make_blender=make)
    prompt = rag_prompts(engine, count=2, passages=3)[1]
    local = Blender(
        engine.model,
        ChunkCache(MemoryTier(256 << 20), engine.model_config, engine.fingerprint, engine.dtype_name),
    )

    # warm-up at ingestion: the caches are computed by the worker and stored here
    lookups = remote[0].lookup(prompt, "w")
    missing = [lk for lk in lookups if lk.exact is None and lk.base is None]
    entries = remote[0].precompute(prompt, missing, "w")
    expected = local.precompute(prompt, missing, "w")
    assert [e.key for e in entries] == [e.key for e in expected] and len(entries) == len(missing)
    for got, want in zip(entries, expected, strict=True):
        assert torch.equal(got.k, want.k) and torch.equal(got.v, want.v) and got.meta.craft == want.meta.craft
    chunk_kv.cache.put_many(entries)
    local.cache.put_many(expected)
    assert worker.calls == ["ragblend_precompute"]

    # a blend in the worker: its K/V are held there, the usage is what the blend here reports
    opts = BlendOptions(mode="cacheblend", ratio=0.15)
    planner = InjectionPlanner(chunk_kv.blender, handoff, remote[0])
    injection = planner.plan(prompt, opts, "w")
    reference = local.prefill(prompt, opts, len(prompt), "w")
    spec = injection.spec
    assert spec is not None and is_held(spec) and spec.tokens == len(prompt) - 1
    assert not Path(spec.path).exists()  # nothing came back through a file
    assert injection.cached_tokens == reference.cached_tokens > 0
    assert injection.recomputed_tokens == reference.recomputed_tokens > 0
    assert injection.moved_tokens == reference.moved_tokens
    assert injection.timings["blend_ms"] > 0 and "handoff_ms" in injection.timings
    try:
        for layer in (0, engine.model_config.num_layers - 1):
            rows = held.rows(spec.path, layer, 0, spec.tokens)
            assert rows is not None
            assert torch.equal(rows[0], reference.kv.k[layer][0, :, : spec.tokens].transpose(0, 1))
            assert torch.equal(rows[1], reference.kv.v[layer][0, :, : spec.tokens].transpose(0, 1))
    finally:
        held.release(spec.path)
    assert held.rows(spec.path, 0, 0, 1) is None
    assert list(handoff.path.iterdir()) == []  # job files are removed after their call


def test_a_job_file_from_elsewhere_is_refused(handoff: HandoffDir, tmp_path: Path) -> None:
    stray = tmp_path / "stray.job"
    torch.save({"name": "x"}, stray)
    with pytest.raises(ValueError, match="outside"):
        read_job(str(stray), str(handoff.path))


class _Planted:
    """Not among the job types: what a planted file would ask the unpickler to build."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (print, ("this must never run",))


def test_a_job_file_with_other_objects_is_refused_unbuilt(handoff: HandoffDir) -> None:
    import pickle

    path = handoff.path / "planted.job"
    torch.save({"prompt": _Planted()}, path)
    with pytest.raises(pickle.UnpicklingError, match="print"):
        read_job(str(path), str(handoff.path))


def test_files_are_written_without_crc_and_read_back_equal(handoff: HandoffDir) -> None:
    import zipfile

    before = torch.serialization.get_crc32_options()
    path = handoff.path / "x.job"
    tensor = torch.randn(3, 5)
    save_file({"t": tensor}, path)
    assert torch.serialization.get_crc32_options() == before  # the process-wide switch is put back
    data = [i for i in zipfile.ZipFile(path).infolist() if "/data/" in i.filename]
    assert data and all(i.CRC == 0 for i in data)
    for mmap in (False, True):
        assert torch.equal(load_file(path, mmap=mmap)["t"], tensor)
