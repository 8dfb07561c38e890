"""Chunk KV reuse as one capability of a loaded engine: the chunk cache, the blender, warm-up, the
inputs of selection's cost model, and the device they all run on.

Built once per engine from its loaded model (engine/loaded_model.py) and exposed as `Engine.chunk_kv`
by every backend that reuses chunk caches, so the server and retrieval reach chunk caches through
this object alone and never ask which backend they hold.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import torch

from cache.store import ChunkStore
from engine.blend.blender import Blender
from engine.blend.chunk_cache import ChunkCache
from engine.blend.options import BlendOptions
from engine.chunk_warmup import WarmupReport, warm_chunks
from engine.loaded_model import LoadedModel
from engine.model import LlamaModel
from engine.prefill_speed import PrefillSpeed, measure_prefill_speed
from engine.prompt import Prompt

T = TypeVar("T")


class BackgroundRunner(Protocol):
    """Runs `fn` on a blender at the backend's background priority (it yields to requests) and
    returns its result, blocking the calling thread until it is done."""

    def __call__(self, fn: Callable[[Blender], T], name: str) -> T: ...


@dataclass(frozen=True)
class SelectionCosts:
    """What pricing chunks for one prompt needs from the engine (retrieval/selection/cost.py).

    `full_layer_share`: the share of a warm chunk's tokens computed anyway by the layers the blend
    mode runs on every token (cacheblend's check layers); the speed figures are None without a
    measured prefill speed; prefix and query rows are the prompt's own, the same whatever is chosen.
    """

    full_layer_share: float
    tokens_per_s: float | None
    pair_s: float
    prefix_tokens: int
    query_tokens: int


class ChunkKV:
    """The chunk caches of one engine and the model work on them.

    Rules: one instance per loaded engine; `blender` runs on the engine's model and device, and is
    not thread-safe (each backend serialises its use: the torch engine through its scheduler, the
    vLLM backend through its one blend thread); model work nobody waits for (warm-up) goes through
    `run_background`; the store keeps host copies of every entry, whatever the device.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        store: ChunkStore,
        run_background: BackgroundRunner | None = None,
        make_blender: Callable[[LlamaModel, ChunkCache], Blender] = Blender,
        measure_speed: Callable[[], PrefillSpeed] | None = None,
    ) -> None:
        self.model: LlamaModel = loaded.model
        self.num_layers = loaded.model_config.num_layers
        self.cache = ChunkCache(store, loaded.model_config, loaded.fingerprint, loaded.dtype_name)
        # a backend whose model work runs elsewhere passes its own blender and speed measurement
        self.blender = make_blender(self.model, self.cache)
        self._measure_speed = measure_speed or (lambda: measure_prefill_speed(self.model))
        self.build_prompt = loaded.prompts.build
        self._background = run_background
        self._speed: PrefillSpeed | None = None
        self._speed_lock = threading.Lock()

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def store(self) -> ChunkStore:
        return self.cache.store

    def run_background(self, fn: Callable[[Blender], T], name: str = "background") -> T:
        if self._background is None:
            return fn(self.blender)
        return self._background(fn, name)

    def warm_up(self, texts: Sequence[str], salt: str, system: str | None = None) -> WarmupReport:
        """Compute and store the base cache of every text the store lacks (ingestion's hook), at
        background priority, so the first question that retrieves these texts blends."""
        texts = list(texts)
        return self.run_background(
            lambda blender: warm_chunks(blender, self.build_prompt, texts, salt, system), "kv-warmup"
        )

    def warm_flags(self, prompt: Prompt, salt: str) -> list[bool]:
        """For each document piece of `prompt` (built with documents), whether its base cache is
        stored: one batched store call, no entry moved; a store fault answers all False."""
        pieces = prompt.pieces
        return self.cache.warm_many([p.ids for p in pieces[1:-1]], pieces[0].ids, salt)

    def prefill_speed(self) -> PrefillSpeed:
        """The model's prefill time model, measured on first use (a few short prefills), then kept."""
        with self._speed_lock:
            if self._speed is None:
                self._speed = self._measure_speed()
            return self._speed

    def selection_costs(self, opts: BlendOptions, prompt: Prompt, with_speed: bool) -> SelectionCosts:
        """The engine's side of selection's cost model for `prompt` under `opts`; `with_speed`
        measures the prefill speed (budgets in milliseconds) when it is not known yet."""
        share = (opts.check_layer + 1) / self.num_layers if opts.mode == "cacheblend" else 0.0
        speed = self.prefill_speed() if with_speed else None
        return SelectionCosts(
            full_layer_share=min(1.0, share),
            tokens_per_s=speed.tokens_per_s if speed else None,
            pair_s=speed.pair_s if speed else 0.0,
            prefix_tokens=sum(len(p.ids) for p in prompt.pieces if p.kind == "prefix"),
            query_tokens=sum(len(p.ids) for p in prompt.pieces if p.kind == "query"),
        )
