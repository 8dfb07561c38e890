"""What a request hands vLLM: the prompt rows whose K/V come from chunk caches, blended beside vLLM.

The blend runs in the serving process on our own copy of the weights, with the same code as the
torch engine (engine/blend), and only the resulting K/V travel to vLLM (engine/vllm/handoff.py).
Per mode:

- full: nothing; vLLM prefills the prompt (with its own prefix caching when that is switched on).
- prefix: the leading pieces whose caches were computed after exactly the same tokens are injected
  as they are; vLLM prefills from the first miss on.
- reuse, cacheblend, cachecraft: the blender prefills the whole prompt over the placed chunk caches
  (recomputing what the mode says) and every row but the last is injected. With no cached piece at
  all there is nothing to blend, and vLLM's own prefill (faster than ours) does the work instead.

vLLM always computes the last prompt token itself, which gives it the first output's logits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.blend.blender import Blender, PieceLookup
from engine.blend.options import BlendOptions
from engine.blend.placement import place_entry
from engine.kv_cache import KVCache
from engine.prompt import Prompt
from engine.vllm.handoff import HandoffDir, HandoffSpec
from engine.vllm.worker_blend import WorkerBlender


@dataclass
class Injection:
    """The handoff of one request (None: vLLM computes everything) and what to report about it."""

    spec: HandoffSpec | None
    cached_tokens: int = 0
    recomputed_tokens: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    # store what this request taught the chunk cache, one piece each; run after the answer, in order
    write_backs: list[Callable[[], None]] = field(default_factory=list)
    moved_tokens: int = 0  # cached tokens whose context changed (what the recompute ratio is of)


# Above this share of the prompt in pieces the store lacks, vLLM prefills the prompt whole: a blend
# computes those rows with our forward (in the worker, or here), slower than vLLM's own prefill (about
# half its speed on the CPUs measured, so a blend at r = 0.15 only pays below ~40% missing).
MAX_MISSING_SHARE = 0.4


class InjectionPlanner:
    """Blends (or looks up) a prompt and writes the handoff. One request at a time: the caller
    serializes calls (the blender is not thread-safe)."""

    def __init__(self, blender: Blender, handoff: HandoffDir, worker: WorkerBlender | None = None) -> None:
        self.blender = blender
        self.handoff = handoff
        self.worker = worker  # when set, blends run in vLLM's worker and their K/V stay there

    def plan(self, prompt: Prompt, opts: BlendOptions | None, salt: str) -> Injection:
        if opts is None or not opts.reuses:
            return Injection(None)
        started = time.perf_counter()
        lookups = self.blender.lookup(prompt, salt)
        fetch_ms = (time.perf_counter() - started) * 1000
        missing = [lk for lk in lookups if lk.exact is None and lk.base is None]
        store_missing = self._store_missing(prompt, missing, salt)
        if opts.mode == "prefix":
            return self._prefix(prompt, lookups, fetch_ms, store_missing)
        if sum(lk.end - lk.start for lk in missing) > MAX_MISSING_SHARE * len(prompt):
            return Injection(None, timings={"kv_fetch_ms": fetch_ms}, write_backs=store_missing)
        if self.worker is not None:
            return self._in_worker(prompt, lookups, opts, fetch_ms, store_missing)
        n = len(prompt)
        result = self.blender.prefill_found(prompt, lookups, opts, n, fetch_ms)
        blended = time.perf_counter()
        spec = self.handoff.write(result.kv, n - 1)
        timings = {
            "kv_fetch_ms": fetch_ms,
            "blend_ms": result.prefill_ms,
            "handoff_ms": (time.perf_counter() - blended) * 1000,
        }

        def write_back() -> None:
            self.blender.write_back(prompt, result, opts, salt)

        return Injection(
            spec, result.cached_tokens, result.recomputed_tokens, timings, [write_back], result.moved_tokens
        )

    def _in_worker(
        self,
        prompt: Prompt,
        lookups: list[PieceLookup],
        opts: BlendOptions,
        fetch_ms: float,
        store_missing: list[Callable[[], None]],
    ) -> Injection:
        """The blend in vLLM's worker. Its write-back is `store_missing`: outside the prefix mode a
        blend teaches the cache only the base versions of the pieces it lacked."""
        assert self.worker is not None
        spec, figures = self.worker.blend_held(prompt, lookups, opts)
        timings = {
            "kv_fetch_ms": fetch_ms,
            "blend_ms": figures["blend_ms"],
            "handoff_ms": figures["handoff_ms"],
        }
        return Injection(
            spec,
            int(figures["cached_tokens"]),
            int(figures["recomputed_tokens"]),
            timings,
            store_missing,
            int(figures["moved_tokens"]),
        )

    def _prefix(
        self,
        prompt: Prompt,
        lookups: list[PieceLookup],
        fetch_ms: float,
        store_missing: list[Callable[[], None]],
    ) -> Injection:
        placed = time.perf_counter()
        reused = 0
        exact = []
        for lk in lookups:
            if lk.exact is None:
                break
            exact.append(lk)
            reused = lk.end
        timings = {"kv_fetch_ms": fetch_ms}
        tokens = min(reused, len(prompt) - 1)
        if tokens <= 0:
            return Injection(None, timings=timings, write_backs=store_missing)
        model = self.blender.model
        kv = KVCache(model.cfg, reused, model.dtype)
        for lk in exact:
            assert lk.exact is not None
            place_entry(kv, model.rope, lk.exact.k, lk.exact.v, lk.exact.start, lk.start)
        spec = self.handoff.write(kv, tokens)
        timings["handoff_ms"] = (time.perf_counter() - placed) * 1000
        return Injection(spec, reused, 0, timings, store_missing)

    def _store_missing(
        self, prompt: Prompt, missing: list[PieceLookup], salt: str
    ) -> list[Callable[[], None]]:
        """The base versions of `missing`, one piece per step (the prefix piece with the first, when
        it is missing: the later steps read it back from the store)."""
        steps = (
            [missing[:2], *([lk] for lk in missing[2:])]
            if missing and missing[0].index == 0
            else [[lk] for lk in missing]
        )

        def store(pieces: list[PieceLookup]) -> Callable[[], None]:
            def run() -> None:
                # a request over the same documents may have queued (or stored) them since
                cache, docs = self.blender.cache, [lk for lk in pieces if lk.index != 0]
                stored = cache.warm_many(
                    [prompt.pieces[lk.index].ids for lk in docs], prompt.pieces[0].ids, salt
                )
                todo = [lk for lk in pieces if lk.index == 0] + [
                    lk for lk, w in zip(docs, stored, strict=True) if not w
                ]
                if todo:
                    cache.put_many(self.blender.precompute(prompt, todo, salt))

            return run

        return [store(pieces) for pieces in steps]
