"""Blending in vLLM's worker, without vLLM: the serving side (engine/vllm/worker_blend.py) and the
worker's job handling (engine/vllm/worker_jobs.py) wired to each other in one process, the worker's
blender running on the real embedded model. What crosses between them is what crosses between the
processes: job files and the held K/V. (With vLLM, tests/engine/vllm/test_vllm_engine.py runs this path
end to end against plain vLLM's tokens.)"""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
import struct
from pathlib import Path
from typing import Any

import pytest
import torch

from cache.memory_tier import MemoryTier
from engine.blend.blender import Blender, PieceLookup
from engine.blend.chunk_cache import ChunkCache
from engine.blend.options import PROBE_TEMPERATURE, BlendOptions
from engine.blend.precompute import ChunkKV as PieceKV
from engine.chunk_kv import ChunkKV
from engine.model import LlamaModel
from engine.prompt import Prompt, PromptPiece
from engine.torch_engine import TorchEngine
from engine.vllm import held
from engine.vllm.handoff import HandoffDir
from engine.vllm.job_file import MAGIC, JobFileError
from engine.vllm.prepare import InjectionPlanner
from engine.vllm.worker_blend import SLICE_TOKENS, WorkerBlender, is_held
from engine.vllm.worker_jobs import (
    blend_job,
    precompute_job,
    read_chunks,
    read_job,
    write_blend_job,
    write_precompute_job,
)
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

    def make(model: LlamaModel, cache: ChunkCache) -> Blender:  # whole pieces: bit-for-bit the same
        remote.append(WorkerBlender(model, cache, worker, handoff.path, slice_tokens=1 << 20))
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
    assert missing[0].index == 0  # a call for the prefix, then one per piece
    assert worker.calls == ["ragblend_precompute"] * len(missing)

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


def test_a_piece_computed_in_slices_equals_it_computed_whole(
    engine: TorchEngine, handoff: HandoffDir
) -> None:
    worker = InProcessWorker(engine, handoff.path)
    shell = LlamaModel.shell(engine.model_config, engine.model.dtype, engine.max_context)
    unused = ChunkCache(MemoryTier(1), engine.model_config, "unused", engine.dtype_name)
    pauses: list[int] = []
    sliced = WorkerBlender(shell, unused, worker, handoff.path, lambda: pauses.append(1), slice_tokens=32)
    prompt = rag_prompts(engine, count=1, passages=2)[0]
    prefix_ids, piece = prompt.pieces[0].ids, prompt.pieces[1].ids
    fresh, (got,) = sliced.compute_chunks(prefix_ids, None, [piece])
    want_prefix, (want,) = Blender(engine.model, unused).compute_chunks(prefix_ids, None, [piece])
    assert fresh is not None and want_prefix is not None and torch.equal(fresh.k, want_prefix.k)
    # one call for the prefix, one per slice, each after a pause point
    assert len(pauses) == len(worker.calls) == 1 + math.ceil(len(piece) / 32) > 3
    assert got.start == want.start == len(prefix_ids) and got.k.shape == want.k.shape
    # the same rows, up to the rounding of matrix products of other shapes
    torch.testing.assert_close(got.k, want.k, atol=2e-2, rtol=1e-2)
    torch.testing.assert_close(got.v, want.v, atol=2e-2, rtol=1e-2)
    # the statistics count the prefix only, as for the piece computed whole
    assert got.craft["token_inter"] == pytest.approx(want.craft["token_inter"], abs=1e-3)
    for name in ("cci", "a", "b"):
        assert got.craft[name] == pytest.approx(want.craft[name], rel=1e-3)


def test_a_cold_prompt_is_stored_after_the_answer_one_piece_per_step(
    engine: TorchEngine, handoff: HandoffDir
) -> None:
    worker = InProcessWorker(engine, handoff.path)
    shell = LlamaModel.shell(engine.model_config, engine.model.dtype, engine.max_context)
    loaded = dataclasses.replace(loaded_of(engine), model=shell)
    remote: list[WorkerBlender] = []

    def make(model: LlamaModel, cache: ChunkCache) -> Blender:
        remote.append(WorkerBlender(model, cache, worker, handoff.path))
        return remote[0]

    chunk_kv = ChunkKV(loaded, MemoryTier(256 << 20), make_blender=make)
    prompt = rag_prompts(engine, count=1, passages=3)[0]
    planner = InjectionPlanner(chunk_kv.blender, handoff, remote[0])
    injection = planner.plan(prompt, BlendOptions(mode="probe"), "c")
    # nothing cached: vLLM prefills it whole, and no model work ran before the answer
    assert injection.spec is None and worker.calls == []
    pieces = len(prompt.pieces) - 1  # the prefix and the documents; the query is never stored
    assert len(injection.write_backs) == pieces - 1  # the prefix goes with the first document
    for step in injection.write_backs:
        step()
    # a call for the prefix, then one per slice of each document
    slices = sum(math.ceil(len(p.ids) / SLICE_TOKENS) for p in prompt.pieces[1:-1])
    assert worker.calls == ["ragblend_precompute"] * (1 + slices) and slices > pieces - 1
    found = remote[0].lookup(prompt, "c")
    assert all(lk.base is not None or lk.exact is not None for lk in found)
    again = planner.plan(prompt, BlendOptions(mode="probe"), "c")
    assert again.spec is not None and again.write_backs == [] and again.cached_tokens > 0
    held.release(again.spec.path)


def test_a_job_file_from_elsewhere_is_refused(handoff: HandoffDir, tmp_path: Path) -> None:
    stray = tmp_path / "stray.job"
    write_precompute_job(stray, [1, 2], None, [[3]])
    with pytest.raises(ValueError, match="outside"):
        read_job(str(stray), str(handoff.path))


class _Planted:
    """What a planted pickle would ask an unpickler to run: it creates the file `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Path]]:
        return (Path.touch, (self.marker,))


def test_a_planted_pickle_is_refused_and_never_unpickled(handoff: HandoffDir, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = handoff.path / "planted.job"
    torch.save({"prompt": _Planted(marker)}, path)
    with pytest.raises(JobFileError, match="magic"):
        read_job(str(path), str(handoff.path))
    path.write_bytes(pickle.dumps(_Planted(marker)))
    with pytest.raises(JobFileError, match="magic"):
        read_job(str(path), str(handoff.path))
    assert not marker.exists()


def _chunk(tokens: int, start: int, dtype: torch.dtype = torch.float32) -> PieceKV:
    k, v = torch.randn(2, 3, tokens, 4, dtype=dtype), torch.randn(2, 3, tokens, 4, dtype=dtype)
    return PieceKV(k, v, start, {"cci": 0.5, "token_inter": [0.25] * tokens})


def _blend_job(path: Path) -> tuple[Prompt, list[PieceLookup], BlendOptions]:
    prompt = Prompt(
        (
            PromptPiece("prefix", (1, 2), "sys"),
            PromptPiece("document", (5, 6, 7), "doc"),
            PromptPiece("query", (9,), "q?"),
        )
    )
    lookups = [PieceLookup(1, 2, 5, "exact", "base", exact=None, base=_chunk(3, 2, torch.bfloat16))]
    opts = BlendOptions(mode="cacheblend", ratio=0.25, widen=2)
    write_blend_job(path, "held-name", prompt, lookups, opts)
    return prompt, lookups, opts


def test_jobs_and_results_read_back_equal_and_the_files_hold_no_pickle(handoff: HandoffDir) -> None:
    path = handoff.path / "b.job"
    prompt, lookups, opts = _blend_job(path)
    assert b"\x80\x02" not in path.read_bytes()[:16] and path.read_bytes().startswith(MAGIC)
    job = read_job(str(path), str(handoff.path))
    assert job["name"] == "held-name" and job["prompt"] == prompt and job["opts"] == opts
    (got,), (want,) = job["lookups"], lookups
    assert (got.index, got.start, got.end, got.exact_key, got.base_key, got.exact) == (
        1,
        2,
        5,
        "exact",
        "base",
        None,
    )
    assert got.base is not None and want.base is not None
    assert torch.equal(got.base.k, want.base.k) and torch.equal(got.base.v, want.base.v)
    assert got.base.k.dtype == torch.bfloat16 and got.base.start == 2 and got.base.craft == want.base.craft

    prefix, chunks = _chunk(2, 0), [_chunk(3, 2), _chunk(1, 5)]
    path = handoff.path / "p.job"
    write_precompute_job(path, [1, 2], prefix, [[5, 6, 7], [8]])
    job = read_job(str(path), str(handoff.path))
    assert job["prefix_ids"] == [1, 2] and job["pieces"] == [[5, 6, 7], [8]]
    assert torch.equal(job["prefix"].k, prefix.k)

    class Computes:
        def compute_chunks(self, *args: Any) -> tuple[PieceKV | None, list[PieceKV]]:
            return None, chunks

    out = Path(precompute_job(Computes(), job, handoff.path / "p.out"))  # type: ignore[arg-type]
    fresh, back = read_chunks(out)
    assert fresh is None and len(back) == 2
    for a, b in zip(back, chunks, strict=True):
        assert torch.equal(a.k, b.k) and torch.equal(a.v, b.v) and a.start == b.start

    whole = out.read_bytes()
    for cut in (len(whole) - 1, len(whole) - 200, 20):  # a result cut short is refused, whatever it claims
        out.write_bytes(whole[:cut])
        with pytest.raises(JobFileError):
            read_chunks(out)


@pytest.mark.parametrize("damage", ["flip", "truncate", "header", "kind", "options"])
def test_a_damaged_job_file_is_refused(handoff: HandoffDir, damage: str) -> None:
    path = handoff.path / "b.job"
    _blend_job(path)
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[-7] ^= 0x40  # a byte of K/V: the codec's checksum catches it
    elif damage == "truncate":
        data = data[:-100]
    else:
        (length,) = struct.unpack_from("<Q", data, len(MAGIC))
        header = json.loads(data[len(MAGIC) + 8 : len(MAGIC) + 8 + length])
        if damage == "header":
            header["lookups"][0]["base"] = 3  # no such chunk cache
        elif damage == "kind":
            header["prompt"][0]["kind"] = "system"
        else:
            header["opts"]["ratio"] = 7.0
        head = json.dumps(header).encode()
        data = bytearray(MAGIC + struct.pack("<Q", len(head)) + head) + data[len(MAGIC) + 8 + length :]
    path.write_bytes(bytes(data))
    with pytest.raises(JobFileError):
        read_job(str(path), str(handoff.path))


@pytest.mark.parametrize("temperature", [None, 1.0, 1.2])
def test_an_unset_or_set_reuse_temperature_reads_back(handoff: HandoffDir, temperature: float | None) -> None:
    path = handoff.path / "t.job"
    prompt = Prompt((PromptPiece("prefix", (1,), "s"), PromptPiece("query", (9,), "q")))
    opts = BlendOptions(mode="probe", reuse_temperature=temperature)
    write_blend_job(path, "held-t", prompt, [], opts)
    got = read_job(str(path), str(handoff.path))["opts"]
    assert got == opts and got.temperature == (PROBE_TEMPERATURE if temperature is None else temperature)
