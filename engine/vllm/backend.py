"""RAGBLEND_ENGINE=vllm: vLLM serves the requests (its scheduler, batching and kernels); chunk caches
are blended beside it and injected through our KV connector.

Where the blend runs (`VllmOptions.blend_in_worker`, RAGBLEND_VLLM_BLEND_IN_WORKER):

- in vLLM's worker, on vLLM's own loaded model (the default). Our worker extension
  (engine/vllm/worker_ext.py) runs the torch engine's blend code over vLLM's modules
  (engine/vllm/worker_model.py); this process loads no weights (a weightless model shell keeps the
  config, dtype and rope table), keeps the chunk store and the lookups, and sends what they found in a
  job file (engine/vllm/worker_blend.py). The blended K/V stay in the worker (engine/vllm/held.py)
  and our connector writes them into the paged cache from there. Chunk caches to store (write-back,
  ingestion's warm-up) and the prefill-speed fit of selection are computed in the worker too. The
  calls go through vLLM's `collective_rpc`, served by its engine core between two steps: while a
  blend runs, vLLM's other requests wait (on a CPU the two would share the same cores anyway).
- here, on our own copy of the weights (`blend_in_worker=False`, the older path): the blend of one
  request overlaps vLLM's decoding of the others, at the cost of a second copy of the weights (0.5 GB
  for the embedded model in fp32; on a GPU it would take GPU memory unless the blend runs on the CPU)
  and one pass of the blended K/V through a shared-memory file (engine/vllm/handoff.py).

Every blend mode and usage field is the same on both paths; the prefix mode places the exact leading
caches here (no model needed) and hands them over in a file on both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from hashlib import blake2b
from typing import Any, TypeVar

from vllm.v1.engine.exceptions import EngineDeadError

from cache.memory_tier import MemoryTier
from cache.store import ChunkStore
from engine.base import Engine, EngineUnavailable, ScoringUnsupported
from engine.blend.blender import Blender
from engine.blend.chunk_cache import ChunkCache
from engine.blend.options import BlendOptions
from engine.chunk_kv import ChunkKV
from engine.config import EngineConfig
from engine.event_sink import EventSink, ThreadSink
from engine.events import FinishEvent, FinishReason, GenerationEvent, TokenEvent
from engine.loaded_model import LoadedModel
from engine.logprobs import TokenLogprob
from engine.model import LlamaModel
from engine.prefill_speed import PrefillSpeed
from engine.prompt import Prompt
from engine.request_queue import Job
from engine.sampling import SamplingParams
from engine.scoring import ScoredPrompt
from engine.vllm.blend_queue import BlendQueue, BlendQueueClosed
from engine.vllm.handoff import HandoffDir
from engine.vllm.options import VllmOptions
from engine.vllm.prepare import Injection, InjectionPlanner
from engine.vllm.runtime import VllmRuntime, engine_args
from engine.vllm.sampling_map import finish_reason, from_vllm_logprobs, prompt_scoring_params, to_vllm
from engine.vllm.worker_blend import WorkerBlender, is_held

log = logging.getLogger(__name__)

T = TypeVar("T")


class VllmEngine(Engine):
    name = "vllm"

    def __init__(self, cfg: EngineConfig, store: ChunkStore | None = None) -> None:
        self.options: VllmOptions = cfg.vllm
        # Blending in vLLM's worker: config, tokenizer and a weightless model shell here. Otherwise our
        # copy of the weights, for blending only, on the CPU (in vLLM's dtype, so the K/V match its
        # cache): vLLM holds the device.
        in_worker = self.options.blend_in_worker
        loaded = LoadedModel.load(cfg, "cpu", weights=not in_worker)
        self.cfg = cfg
        self.model_config = loaded.model_config
        self.dtype_name = loaded.dtype_name
        self.max_context = loaded.max_context
        self.max_new_tokens_limit = cfg.max_new_tokens_limit
        self.model_name = cfg.model_dir.name
        self.tokenizer = loaded.tokenizer
        self.prompts = loaded.prompts
        self.eos_ids = loaded.eos_ids
        self.model = loaded.model
        self.fingerprint = loaded.fingerprint
        self.store = store if store is not None else MemoryTier(cfg.chunk_cache_bytes)
        self.handoff = HandoffDir(self.options.handoff_dir)
        self.worker: WorkerBlender | None = None
        if in_worker:

            def make_blender(model: LlamaModel, cache: ChunkCache) -> Blender:
                # its pause points let requests' blends in between the slices of background work
                self.worker = WorkerBlender(
                    model, cache, self._worker_call, self.handoff.path, lambda: self.blend_pool.pause()
                )
                return self.worker

            self.chunk_kv: ChunkKV = ChunkKV(
                loaded, self.store, self._run_background, make_blender, self._worker_speed
            )
        else:
            self.chunk_kv = ChunkKV(loaded, self.store, self._run_background)
        self.chunk_cache = self.chunk_kv.cache
        self.planner = InjectionPlanner(self.chunk_kv.blender, self.handoff, self.worker)
        # One blend (or chunk-cache write-back) at a time, off vLLM's client loop; requests' blends
        # before write-backs and warm-up (engine/vllm/blend_queue.py).
        self.blend_pool = BlendQueue()
        args = engine_args(
            cfg.model_dir, self.dtype_name, self.max_context, self.options, str(self.handoff.path)
        )
        try:
            self.runtime = VllmRuntime(args, self.options)
        except BaseException:
            self.blend_pool.shutdown(wait=False)
            self.handoff.close()
            raise
        where = "in vLLM's worker" if in_worker else "on a copy of the weights here"
        log.info("vLLM backend ready: %s (%s), blending %s", self.model_name, self.dtype_name, where)

    # ---------------- Engine interface ----------------

    def build_prompt(self, query: str, documents: list[str] | None, system: str | None) -> Prompt:
        return self.prompts.build(query, documents, system)

    def failure(self) -> str | None:
        return self.runtime.failure()

    def generate(
        self,
        prompt: Prompt,
        params: SamplingParams,
        cancel: threading.Event | None = None,
        blend: BlendOptions | None = None,
        salt: str = "",
    ) -> Iterator[GenerationEvent]:
        self.check_fits(prompt, params.max_tokens)
        self._check_alive()
        cancel = cancel if cancel is not None else threading.Event()
        sink = ThreadSink()
        self.runtime.call(self._serve(prompt, params, blend, salt, sink, cancel))
        finished = False
        try:
            for event in sink.events():
                finished = finished or isinstance(event, FinishEvent)
                yield event
        finally:
            if not finished:
                cancel.set()

    def submit_job(
        self, prompt: Prompt, params: SamplingParams, blend: BlendOptions | None = None, salt: str = ""
    ) -> Job | None:
        """vLLM batches requests itself: every request goes straight to it."""
        self.check_fits(prompt, params.max_tokens)
        self._check_alive()
        job = Job(None, asyncio.get_running_loop())
        self.runtime.call(self._serve(prompt, params, blend, salt, job, job.cancelled))
        return job

    def score(
        self, prompt: Prompt, blend: BlendOptions | None = None, salt: str = "", top: int = 0
    ) -> ScoredPrompt:
        """A full prefill's prompt log-probabilities, from vLLM's own `prompt_logprobs`. Under a blend
        mode the injected rows are never computed by vLLM, so it has no logits for the text after
        them: refused (the torch engine scores blended prompts)."""
        if blend is not None and blend.reuses:
            raise ScoringUnsupported(
                f"blend mode {blend.mode}: the vLLM backend scores full prefills only (blend mode full)"
            )
        self.check_fits(prompt, 1)
        self._check_alive()
        started = time.perf_counter()
        return self.runtime.call(self._score(prompt, top, started)).result()

    async def _score(self, prompt: Prompt, top: int, started: float) -> ScoredPrompt:
        sp = prompt_scoring_params(top)
        entries = None
        async for out in self.runtime.generate(uuid.uuid4().hex, {"prompt_token_ids": prompt.ids}, sp):
            entries = out.prompt_logprobs if out.prompt_logprobs is not None else entries
        ids = prompt.ids
        scored = from_vllm_logprobs(ids[1:], (entries or [None])[1:], top)
        usage = {"cached_tokens": 0, "recomputed_tokens": 0}
        return ScoredPrompt([None, *scored], usage, {"prefill_ms": (time.perf_counter() - started) * 1000})

    def settle(self, timeout_s: float = 120.0) -> None:
        """Wait until the background blend work queued so far (write-backs, warm-up) has run."""
        self.blend_pool.submit(lambda: None, background=True).result(timeout_s)

    def close(self) -> None:
        # The blend thread first: its jobs call into vLLM's worker, so they must end while vLLM runs.
        # Queued write-backs are dropped (they only cost a later recompute); requests' blends finish.
        self.blend_pool.shutdown(wait=True, drop_background=True)
        self.runtime.close()
        self.handoff.close()

    def _worker_call(self, method: str, *args: Any) -> Any:
        """Call our worker extension's `method` (engine/vllm/worker_ext.py) from any thread but the
        client loop's, and return the worker's answer."""
        (answer,) = self.runtime.call(self.runtime.rpc(method, *args)).result()
        return answer

    def _worker_speed(self) -> PrefillSpeed:
        assert self.worker is not None
        return self.worker.prefill_speed()

    def _run_background(self, fn: Callable[[Blender], T], name: str) -> T:
        """Chunk-KV work nobody waits for (ingestion's warm-up) on the blend thread, between blends:
        the blender is used by one thread only, and vLLM's own process is never touched."""
        return self.blend_pool.submit(fn, self.chunk_kv.blender, background=True).result()

    # ---------------- one request, on vLLM's client loop ----------------

    def _check_alive(self) -> None:
        reason = self.failure()
        if reason is not None:
            raise EngineUnavailable(reason)

    def _cache_salt(self, blend: BlendOptions | None, injection: Injection, salt: str) -> str | None:
        """vLLM's prefix cache must never hand blended (approximate) blocks to another request, nor one
        tenant's blocks to another: blended requests get a salt of their own, others their tenant's."""
        if not self.options.prefix_caching:
            return None
        if injection.spec is not None:
            return f"blend-{uuid.uuid4().hex}"
        return "tenant-" + blake2b(salt.encode(), digest_size=16).hexdigest()

    async def _serve(
        self,
        prompt: Prompt,
        params: SamplingParams,
        blend: BlendOptions | None,
        salt: str,
        sink: EventSink,
        cancel: threading.Event,
    ) -> None:
        started = time.perf_counter()
        injection = Injection(None)
        self.blend_pool.begin()
        try:
            if blend is not None and blend.mode == "prefix" and self.options.prefix_caching:
                blend = None  # vLLM's own prefix caching is the prefix mode then
            injection = await asyncio.wrap_future(
                self.blend_pool.submit(self._plan, prompt, blend, salt, started)
            )
            await self._stream(prompt, params, blend, salt, sink, cancel, injection, started)
        except (EngineDeadError, EngineUnavailable) as exc:
            sink.put(EngineUnavailable(f"the vLLM engine is not serving: {exc}"))
        except Exception as exc:  # delivered to the request; the backend serves on
            log.exception("vLLM request failed")
            sink.put(exc)
        finally:
            # queued before the request ends, so whoever saw it end can wait for them (`settle`)
            for write_back in injection.write_backs:  # a piece each, computed in slices
                self.blend_pool.submit(_logged, write_back, background=True)
            self.blend_pool.end()
            sink.end()
            self.handoff.discard(injection.spec)
            if is_held(injection.spec):
                assert injection.spec is not None
                with contextlib.suppress(Exception):  # a dead engine holds nothing any more
                    await self.runtime.rpc("ragblend_discard", injection.spec.path)

    def _plan(self, prompt: Prompt, blend: BlendOptions | None, salt: str, started: float) -> Injection:
        """The planner's work on the blend thread, timed: `queue_ms` waiting for the thread (behind
        another request's blend or one background step), `plan_ms` the lookup, blend and handoff."""
        begun = time.perf_counter()
        injection = self.planner.plan(prompt, blend, salt)
        injection.timings["queue_ms"] = (begun - started) * 1000
        injection.timings["plan_ms"] = (time.perf_counter() - begun) * 1000
        return injection

    async def _stream(
        self,
        prompt: Prompt,
        params: SamplingParams,
        blend: BlendOptions | None,
        salt: str,
        sink: EventSink,
        cancel: threading.Event,
        injection: Injection,
        started: float,
    ) -> None:
        request_id = uuid.uuid4().hex
        vllm_prompt: dict[str, object] = {"prompt_token_ids": prompt.ids}
        cache_salt = self._cache_salt(blend, injection, salt)
        if cache_salt is not None:
            vllm_prompt["cache_salt"] = cache_salt
        sp = to_vllm(params, self.eos_ids, injection.spec)
        text, completion, vllm_cached = "", 0, 0
        logprobs: list[TokenLogprob] = []
        first_token_at: float | None = None
        reason: FinishReason | None = None
        async for out in self.runtime.generate(request_id, vllm_prompt, sp):
            if cancel.is_set():
                await self.runtime.abort(request_id)
                reason = "cancelled"
                break
            choice = out.outputs[0]
            ids = [int(t) for t in choice.token_ids]
            step = (
                from_vllm_logprobs(ids, choice.logprobs, params.logprobs or 0)
                if params.logprobs is not None
                else []
            )
            logprobs += step
            for i, token in enumerate(ids):
                first_token_at = first_token_at or time.perf_counter()
                # the delta's text and log-probabilities ride on its first token's event
                sink.put(TokenEvent(choice.text if i == 0 else "", token, tuple(step) if i == 0 else ()))
            text += choice.text
            completion += len(choice.token_ids)
            vllm_cached = out.num_cached_tokens or vllm_cached
            if out.finished:
                reason = finish_reason(choice.finish_reason)
        now = time.perf_counter()
        ttft = ((first_token_at or now) - started) * 1000
        cached = injection.cached_tokens
        if injection.spec is None:  # vLLM prefilled the prompt: what its own prefix cache served counts
            cached = max(cached, vllm_cached)
        timings = dict(injection.timings)
        timings["prefill_ms"] = ttft - timings.get("kv_fetch_ms", 0.0)
        sink.put(
            FinishEvent(
                text=text,
                finish_reason=reason or "cancelled",
                prompt_tokens=len(prompt),
                completion_tokens=completion,
                ttft_ms=ttft,
                total_ms=(now - started) * 1000,
                extra_usage={
                    "cached_tokens": cached,
                    "recomputed_tokens": injection.recomputed_tokens,
                    "moved_tokens": injection.moved_tokens,
                },
                extra_timings=timings,
                logprobs=tuple(logprobs) if params.logprobs is not None else None,
            )
        )


def _logged(fn: Callable[[], None]) -> None:
    try:
        fn()
    except BlendQueueClosed:
        log.info("chunk-cache write-back stopped: the backend is closing")
    except Exception:  # a failed write-back only costs a later recompute
        log.exception("chunk-cache write-back failed")
