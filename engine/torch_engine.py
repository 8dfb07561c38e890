"""The embedded engine: our own Llama-family forward in PyTorch, on the CPU or a GPU (RAGBLEND_DEVICE)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch

from cache.memory_tier import MemoryTier
from cache.store import ChunkStore
from engine.base import Engine
from engine.blend.blender import Blender, blend_usage
from engine.blend.gate import run_gate
from engine.blend.options import BlendOptions
from engine.chunk_kv import ChunkKV
from engine.cold_pieces import prefill_once, store_after_answer
from engine.config import EngineConfig
from engine.event_sink import ThreadSink
from engine.events import FinishEvent, GenerationEvent
from engine.generator import decode_loop
from engine.kv_cache import KVCache
from engine.loaded_model import LoadedModel
from engine.prompt import Prompt
from engine.request_queue import Job
from engine.sampling import SamplingParams
from engine.scheduler import Scheduler
from engine.scoring import ScoredPrompt, score_prompt
from engine.stats import EngineStats

log = logging.getLogger(__name__)

T = TypeVar("T")


class TorchEngine(Engine):
    """Loads weights and tokenizer from a Hugging Face directory; serves requests through the batch
    scheduler (engine/scheduler.py), or one at a time when `max_batch_size` is 0."""

    name = "torch"

    def __init__(self, cfg: EngineConfig, store: ChunkStore | None = None) -> None:
        loaded = LoadedModel.load(cfg)
        self.cfg = cfg
        self.model_config = loaded.model_config
        self.dtype_name = loaded.dtype_name
        self.max_context = loaded.max_context
        self.max_new_tokens_limit = cfg.max_new_tokens_limit
        self.model_name = cfg.model_dir.name
        self.tokenizer = loaded.tokenizer
        self.model = loaded.model
        self.prompts = loaded.prompts
        self.eos_ids = loaded.eos_ids
        self.fingerprint = loaded.fingerprint
        self.store = store if store is not None else MemoryTier(cfg.chunk_cache_bytes)
        self.chunk_kv: ChunkKV = ChunkKV(loaded, self.store, self._run_background)
        self.chunk_cache = self.chunk_kv.cache
        self.blender = self.chunk_kv.blender
        self.scheduler: Scheduler | None = None
        if cfg.max_batch_size > 0:
            self.scheduler = Scheduler(
                self.model, self.tokenizer, self.eos_ids, self.chunk_cache, cfg.scheduler_config()
            )
        log.info(
            "loaded %s (%s, %s layers, on %s)",
            self.model_name,
            self.dtype_name,
            self.model_config.num_layers,
            self.model.device,
        )
        gate = run_gate(
            self.model, self.prompts, self.chunk_cache, self.eos_ids, BlendOptions(), cfg.blend_gate
        )
        self.default_blend = gate.chosen
        self.blend_gate = gate.as_dict()

    def build_prompt(self, query: str, documents: list[str] | None, system: str | None) -> Prompt:
        return self.prompts.build(query, documents, system)

    def generate(
        self,
        prompt: Prompt,
        params: SamplingParams,
        cancel: threading.Event | None = None,
        blend: BlendOptions | None = None,
        salt: str = "",
    ) -> Iterator[GenerationEvent]:
        """Blocks the calling thread while the scheduler serves the request alongside any others; safe
        to call from many threads at once. Without a scheduler, `generate_unbatched`."""
        if self.scheduler is None:
            yield from self.generate_unbatched(prompt, params, cancel, blend, salt)
            return
        self.check_fits(prompt, params.max_tokens)
        cancel = cancel if cancel is not None else threading.Event()
        sink = ThreadSink()
        self.scheduler.submit(prompt, params, sink, cancel, blend, salt)
        finished = False
        try:
            for event in sink.events():
                finished = finished or isinstance(event, FinishEvent)
                yield event
        finally:
            if not finished:  # the consumer stopped early: free the request's place in the batch
                cancel.set()

    def submit_job(
        self, prompt: Prompt, params: SamplingParams, blend: BlendOptions | None = None, salt: str = ""
    ) -> Job | None:
        if self.scheduler is None:
            return None
        self.check_fits(prompt, params.max_tokens)
        job = Job(None, asyncio.get_running_loop())
        self.scheduler.submit(prompt, params, job, job.cancelled, blend, salt)
        return job

    def submit_jobs(
        self,
        prompt: Prompt,
        params: list[SamplingParams],
        blend: BlendOptions | None = None,
        salt: str = "",
    ) -> list[Job] | None:
        """One shared prefill per group of at most max_batch_size sequences (engine/batch_join.py)."""
        scheduler = self.scheduler
        if scheduler is None:
            return None
        for p in params:
            self.check_fits(prompt, p.max_tokens)
        loop = asyncio.get_running_loop()
        jobs = [Job(None, loop) for _ in params]
        width = scheduler.cfg.max_batch_size
        try:
            for at in range(0, len(params), width):
                group = jobs[at : at + width]
                cancels = [j.cancelled for j in group]
                scheduler.submit_group(prompt, params[at : at + width], list(group), cancels, blend, salt)
        except BaseException:
            for job in jobs:
                job.cancel()
            raise
        return jobs

    def score(
        self, prompt: Prompt, blend: BlendOptions | None = None, salt: str = "", top: int = 0
    ) -> ScoredPrompt:
        """Runs through the scheduler at background priority (between the batch's steps, its layers
        yielding to waiting requests), or in the caller's thread without a scheduler."""
        self.check_fits(prompt, 0)
        return self.run_background(lambda b: score_prompt(b, prompt, blend, salt, top), "score")

    def stats(self) -> EngineStats | None:
        return self.scheduler.stats() if self.scheduler is not None else None

    def failure(self) -> str | None:
        return self.scheduler.failure() if self.scheduler is not None else None

    def run_background(self, fn: Callable[[Blender], T], name: str = "background") -> T:
        """Run model work nobody is waiting for (ingestion) at the scheduler's background priority,
        on a blender whose layers yield to requests; blocks the calling thread until it is done."""
        return self.chunk_kv.run_background(fn, name)

    def _run_background(self, fn: Callable[[Blender], T], name: str) -> T:
        scheduler = self.scheduler
        if scheduler is None:
            return fn(self.blender)
        blender = scheduler.runner.blender
        return scheduler.run_background(lambda: fn(blender), name).wait()

    @property
    def background_model(self) -> BackgroundForward:
        """The model as ingestion's chunkers call it: each forward runs at background priority."""
        return BackgroundForward(self)

    def close(self) -> None:
        if self.scheduler is not None:
            self.scheduler.close()

    def generate_unbatched(
        self,
        prompt: Prompt,
        params: SamplingParams,
        cancel: threading.Event | None = None,
        blend: BlendOptions | None = None,
        salt: str = "",
    ) -> Iterator[GenerationEvent]:
        """The request alone, in the caller's thread: the reference the scheduler is tested against."""
        started = time.perf_counter()
        self.check_fits(prompt, params.max_tokens)
        capacity = len(prompt) + params.max_tokens
        if blend is None or not blend.reuses:
            ids = torch.tensor(prompt.ids, device=self.model.device)
            kv = self.model.new_cache(capacity)
            logits = self.model.forward(ids, kv)
            usage = {"cached_tokens": 0, "recomputed_tokens": 0}
            timings = {"prefill_ms": (time.perf_counter() - started) * 1000}
            yield from self._decode(kv, logits, params, prompt, started, cancel, usage, timings)
            return
        result, entries = prefill_once(self.blender, prompt, blend, capacity, salt)
        usage = blend_usage(result)
        timings = {"kv_fetch_ms": result.kv_fetch_ms, "prefill_ms": result.prefill_ms}
        yield from self._decode(result.kv, result.logits, params, prompt, started, cancel, usage, timings)
        # After the final event: the answer is out, and what this request computed is stored.
        store_after_answer(self.blender, prompt, result, blend, salt, entries)

    def _decode(
        self,
        kv: KVCache,
        logits: torch.Tensor,
        params: SamplingParams,
        prompt: Prompt,
        started: float,
        cancel: threading.Event | None,
        usage: dict[str, int],
        timings: dict[str, float],
    ) -> Iterator[GenerationEvent]:
        return decode_loop(
            self.model,
            self.tokenizer,
            self.eos_ids,
            kv,
            logits,
            params,
            prompt_tokens=len(prompt),
            started=started,
            cancel=cancel,
            extra_usage=usage,
            extra_timings=timings,
        )


class BackgroundForward:
    """`new_cache` and `forward` of the engine's model, each forward a background job."""

    def __init__(self, engine: TorchEngine) -> None:
        self._engine = engine
        self.cfg = engine.model.cfg

    def new_cache(self, capacity: int) -> KVCache:
        return self._engine.model.new_cache(capacity)

    def forward(self, ids: torch.Tensor, kv: Any, *, all_logits: bool = False) -> torch.Tensor:
        return self._engine.run_background(
            lambda b: b.model.forward(ids, kv, all_logits=all_logits), "chunking-forward"
        )
