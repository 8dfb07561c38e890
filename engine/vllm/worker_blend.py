"""The serving process's side of blending inside vLLM's worker (RAGBLEND_VLLM_BLEND_IN_WORKER).

The serving process keeps what needs no weights: the chunk store, the lookups, the prompt pieces and
the usage figures. Every piece of model work goes to vLLM's worker, where our forward runs over vLLM's
own loaded model (engine/vllm/worker_ext.py, engine/vllm/worker_model.py):

- a blend: the prompt, what the lookups found and the options go to the worker in one job file
  (tmpfs, written once, read once); the blended K/V stay in the worker's memory (engine/vllm/held.py)
  and our connector writes them into the paged cache from there, with no file on the way back;
- the base caches of pieces the store lacks (write-back after a request, warm-up at ingestion), and
  selection's prefill-speed fit, through the same call; the caches come back in a file. A piece is
  computed in slices of `slice_tokens` tokens, one call each (each slice after the prefix and the
  slices before it; the result is the whole piece's cache, statistics included), with a pause point
  before each (engine/vllm/blend_queue.py), so a request that arrives waits for one slice.

Calls go through vLLM's `collective_rpc`, which its engine core serves between two steps: while a blend
runs, vLLM's other requests wait for it (the blend is itself a prefill on the same cores, so on a CPU
the two would compete for them anyway).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from engine.blend.blender import Blender, PieceLookup
from engine.blend.chunk_cache import ChunkCache
from engine.blend.options import BlendOptions
from engine.blend.precompute import ChunkKV, craft_from_token_inter
from engine.config import DTYPES
from engine.model import LlamaModel
from engine.prefill_speed import PrefillSpeed
from engine.prompt import Prompt
from engine.vllm.handoff import HandoffSpec
from engine.vllm.worker_jobs import read_chunks, write_blend_job, write_precompute_job

# Calls `method` of our worker extension with `args` and returns the (one) worker's answer.
WorkerCall = Callable[..., Any]

HELD_SUFFIX = ".held"

# Tokens per call when computing a piece to store: 0.2-0.4 s for the embedded model on 2 AVX2 cores in
# float32, a fifth of a 400-word passage; each call adds a job file of the context so far (~10 ms).
SLICE_TOKENS = 128


class WorkerBlender(Blender):
    """A Blender whose model work runs in vLLM's worker. `model` is a weightless shell (config, dtype
    and rope table: what placing cached K/V for the prefix mode needs); lookups and the chunk cache
    stay here. Not thread-safe, like every Blender: the backend calls it from its one blend thread."""

    def __init__(
        self,
        model: LlamaModel,
        cache: ChunkCache,
        call: WorkerCall,
        directory: Path,
        pause: Callable[[], None] = lambda: None,
        slice_tokens: int = SLICE_TOKENS,
    ) -> None:
        super().__init__(model, cache)
        self.call = call
        self.directory = directory
        self.pause = pause  # called before each call that computes chunk caches
        self.slice_tokens = slice_tokens

    def blend_held(
        self, prompt: Prompt, lookups: list[PieceLookup], opts: BlendOptions
    ) -> tuple[HandoffSpec, dict[str, float]]:
        """Blend `prompt` in the worker, which keeps the K/V of every row but the last for our
        connector; returns their handoff spec and the blend's figures (usage counts, `blend_ms`, and
        `handoff_ms`: the job's trip there and back)."""
        started = time.perf_counter()
        cfg = self.model.cfg
        dtype = next(name for name, dt in DTYPES.items() if dt == self.model.dtype)
        name = str(self.directory / f"{uuid.uuid4().hex}{HELD_SUFFIX}")
        spec = HandoffSpec(name, len(prompt) - 1, cfg.num_layers, cfg.num_kv_heads, cfg.head_dim, dtype)
        path = self._job_path()
        try:
            write_blend_job(path, name, prompt, lookups, opts)
            figures: dict[str, float] = dict(self.call("ragblend_blend", str(path)))
        finally:
            path.unlink(missing_ok=True)
        total_ms = (time.perf_counter() - started) * 1000
        figures["handoff_ms"] = max(total_ms - figures["blend_ms"], 0.0)
        return spec, figures

    def compute_prefix(self, prefix_ids: Sequence[int]) -> ChunkKV:
        self.pause()
        fresh, _ = self._compute(prefix_ids, None, [], None)
        assert fresh is not None
        return fresh

    def compute_piece(self, prefix: ChunkKV, ids: Sequence[int], stats_len: int | None) -> ChunkKV:
        """One piece's cache after `prefix`, a slice per call; its statistics count attention to the
        prefix (or its first `stats_len` rows) only, as a piece computed whole."""
        ids = list(ids)
        stats = prefix.k.shape[2] if stats_len is None else stats_len
        ks: list[torch.Tensor] = []
        vs: list[torch.Tensor] = []
        token_inter: list[float] = []
        for first in range(0, max(len(ids), 1), self.slice_tokens):
            self.pause()
            context = prefix
            if ks:
                dtype = prefix.k.dtype
                context = ChunkKV(
                    torch.cat([prefix.k, *(k.to(dtype) for k in ks)], 2),
                    torch.cat([prefix.v, *(v.to(dtype) for v in vs)], 2),
                    0,
                    {},
                )
            _, (part,) = self._compute((), context, [ids[first : first + self.slice_tokens]], stats)
            ks.append(part.k)
            vs.append(part.v)
            scores = part.craft["token_inter"]
            assert isinstance(scores, list)
            token_inter += scores
        if len(ks) == 1:  # one call: the worker's result as it is
            return part
        return ChunkKV(
            torch.cat(ks, 2), torch.cat(vs, 2), prefix.k.shape[2], craft_from_token_inter(token_inter, stats)
        )

    def _compute(
        self,
        prefix_ids: Sequence[int],
        prefix: ChunkKV | None,
        pieces: Sequence[Sequence[int]],
        stats_len: int | None,
    ) -> tuple[ChunkKV | None, list[ChunkKV]]:
        """One call into the worker: Blender.compute_chunks there."""
        path = self._job_path()
        try:
            write_precompute_job(path, prefix_ids, prefix, pieces, stats_len)
            out = Path(self.call("ragblend_precompute", str(path)))
        finally:
            path.unlink(missing_ok=True)
        try:
            return read_chunks(out)
        finally:
            out.unlink(missing_ok=True)

    def prefill_speed(self) -> PrefillSpeed:
        figures = self.call("ragblend_prefill_speed")
        return PrefillSpeed(tokens_per_s=float(figures["tokens_per_s"]), pair_s=float(figures["pair_s"]))

    def _job_path(self) -> Path:
        return self.directory / f"{uuid.uuid4().hex}.job"


def is_held(spec: HandoffSpec | None) -> bool:
    """Whether `spec` names K/V held in the worker rather than a file."""
    return spec is not None and spec.path.endswith(HELD_SUFFIX)
