"""What the LM-driven chunkers need from the engine: a tokenizer and a forward over a KV cache."""

from __future__ import annotations

import copy
import threading
from typing import Any, Protocol

import torch


class CausalLM(Protocol):
    def new_cache(self, capacity: int) -> Any: ...

    def forward(self, ids: torch.Tensor, kv: Any, *, all_logits: bool = False) -> torch.Tensor: ...


class LanguageModel(Protocol):
    """Satisfied by engine.torch_engine.TorchEngine. Read-only members, so that implementations may
    hold subtypes (a protocol's plain attributes would have to match exactly)."""

    @property
    def tokenizer(self) -> Any: ...

    @property
    def model(self) -> CausalLM: ...

    @property
    def max_context(self) -> int: ...


class ChunkingLM:
    """The engine's model with a tokenizer of our own.

    The forward is a pure function of a per-call KV cache, so it can run beside generation; a fast
    tokenizer object, though, must not be used from two threads at once, so ingestion tokenizes
    with a private copy.
    """

    def __init__(self, lm: LanguageModel) -> None:
        # An engine that schedules its model offers forwards at background priority, so chunking an
        # upload never delays a user's request; otherwise the model itself.
        self.model: CausalLM = getattr(lm, "background_model", None) or lm.model
        self.max_context = int(lm.max_context)
        self.tokenizer = copy.deepcopy(lm.tokenizer)
        self.bos = _leading_bos(self.tokenizer)


def _leading_bos(tokenizer: Any) -> list[int]:
    """[bos] if the tokenizer opens sequences with it (the model was trained that way), else []."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return []
    probe = tokenizer("x", add_special_tokens=True)["input_ids"]
    return [int(bos)] if probe and probe[0] == bos else []


class LMHandle:
    """Hands out one ChunkingLM per loaded engine, built on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._source: object | None = None
        self._wrapped: ChunkingLM | None = None

    def wrap(self, lm: LanguageModel) -> ChunkingLM:
        with self._lock:
            if self._wrapped is None or self._source is not lm:
                self._wrapped, self._source = ChunkingLM(lm), lm
            return self._wrapped


def has_forward(engine: object) -> bool:
    """Whether `engine` exposes the in-process model the LM chunkers need (vLLM does not)."""
    model = getattr(engine, "model", None)
    return hasattr(engine, "tokenizer") and hasattr(model, "forward") and hasattr(model, "new_cache")
