"""Methods added to vLLM's worker (EngineArgs `worker_extension_cls`), called from the serving process
through `collective_rpc`: our forward over vLLM's own loaded model (engine/vllm/worker_model.py).

vLLM mixes this class into its worker class, so `self` is the worker: `self.model_runner` holds the
model and `self.vllm_config` the configuration. Every name starts with `ragblend_` so none can clash
with the worker's own (vLLM refuses an extension that would override one). The model is built on
first use and kept: it copies no weights, so it costs the worker nothing but the rope table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cache.memory_tier import MemoryTier
from engine.blend.blender import Blender
from engine.blend.chunk_cache import ChunkCache
from engine.config import ModelConfig
from engine.model import LlamaModel
from engine.prefill_speed import measure_prefill_speed
from engine.vllm import held
from engine.vllm.handoff import write_handoff
from engine.vllm.worker_jobs import blend_job, precompute_job, read_job
from engine.vllm.worker_model import model_on_vllm, shared_tensors


class RagblendWorkerExtension:
    model_runner: Any
    vllm_config: Any

    def ragblend_model(self) -> LlamaModel:
        """Our model over vLLM's, built once per worker."""
        model: LlamaModel | None = getattr(self, "_ragblend_model", None)
        if model is None:
            model_config = self.vllm_config.model_config
            cfg = ModelConfig.from_dir(Path(model_config.model))
            model = model_on_vllm(self.model_runner.get_model(), cfg, int(model_config.max_model_len))
            self._ragblend_model = model
        return model

    def ragblend_blender(self) -> Blender:
        """The blend modes over our model on vLLM's weights. Its chunk cache is never used: the
        serving process owns the store, looks the pieces up and sends what it found."""
        blender: Blender | None = getattr(self, "_ragblend_blender", None)
        if blender is None:
            model = self.ragblend_model()
            cache = ChunkCache(MemoryTier(1), model.cfg, "unused", "float32")
            blender = self._ragblend_blender = Blender(model, cache)
        return blender

    def ragblend_blend(self, path: str) -> dict[str, float]:
        """Blend the job of file `path` (engine/vllm/worker_blend.py writes it); its K/V are held
        for our connector under the job's name (engine/vllm/held.py)."""
        return blend_job(self.ragblend_blender(), read_job(path, self._ragblend_dir()))

    def ragblend_precompute(self, path: str) -> str:
        """Chunk caches of the job of file `path`, written to a file beside it (its path returned)."""
        job = read_job(path, self._ragblend_dir())
        return precompute_job(self.ragblend_blender(), job, Path(path).with_suffix(".out"))

    def ragblend_prefill_speed(self) -> dict[str, float]:
        speed = measure_prefill_speed(self.ragblend_model())
        return {"tokens_per_s": speed.tokens_per_s, "pair_s": speed.pair_s}

    def ragblend_discard(self, name: str) -> None:
        held.release(name)

    def ragblend_held(self) -> int:
        return held.count()

    def _ragblend_dir(self) -> str:
        """Our connector's handoff directory: the only place job files are read from."""
        return str(self.vllm_config.kv_transfer_config.kv_connector_extra_config["handoff_dir"])

    def ragblend_weights(self) -> dict[str, int]:
        """How many of our model's tensors are vLLM's parameters themselves, out of how many."""
        model = self.ragblend_model()
        return {
            "shared": shared_tensors(model, self.model_runner.get_model()),
            "tensors": 3 + 2 * len(model.layers),
        }

    def ragblend_prefill_kv(self, ids: list[int], directory: str) -> dict[str, Any]:
        """Prefill `ids` with our forward on vLLM's weights; the K/V of every row go to a new handoff
        file in `directory` (engine/vllm/handoff.py). Returns its spec and the greedy next token."""
        model = self.ragblend_model()
        kv = model.new_cache(len(ids))
        with torch.inference_mode():
            logits = model.forward(torch.tensor(ids, dtype=torch.long), kv)
        spec = write_handoff(kv, len(ids), Path(directory))
        return {"spec": spec.to_params(), "next_token": int(logits.argmax())}
