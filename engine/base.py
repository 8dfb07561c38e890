"""The interface every LLM backend implements (the embedded torch engine, vLLM)."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING

from engine.blend.options import BlendOptions
from engine.events import GenerationEvent
from engine.prompt import Prompt
from engine.request_queue import Job
from engine.sampling import SamplingParams
from engine.scoring import ScoredPrompt
from engine.stats import EngineStats

if TYPE_CHECKING:  # the capability pulls in the model code; the interface stays light to import
    from engine.chunk_kv import ChunkKV


class PromptTooLong(ValueError):
    """The prompt plus the requested new tokens do not fit the model's context."""


class ScoringUnsupported(ValueError):
    """The backend cannot score this prompt the way it was asked (names why)."""


class EngineUnavailable(RuntimeError):
    """The backend cannot serve (an external engine such as vLLM died); the server answers 503."""


class Engine(ABC):
    """A backend that turns prompts into streamed tokens.

    Rules:
    - `build_prompt` tokenizes each piece separately; the model only ever sees the concatenation of the
      pieces' ids.
    - `check_fits` raises `PromptTooLong` (naming both sizes) before any compute is spent.
    - `generate` runs synchronously in the caller's thread, yields `TokenEvent`s and ends with exactly one
      `FinishEvent`; it checks `cancel` between steps and stops with finish_reason "cancelled".
    - With `blend`, cached chunk K/V are reused as the mode says; `salt` (set by the server for the
      caller's tenant, never by the client) separates tenants' cache entries.
    - One `generate` runs at a time per engine unless the backend says otherwise (`submit_job` returns
      a Job instead of None when the backend batches requests itself).
    - `chunk_kv` is the backend's chunk-KV capability (engine/chunk_kv.py: chunk cache, blender,
      warm-up, selection costs, device), built once at load; None for a backend that reuses no chunk
      caches. Callers reach chunk caches through it only, never by asking which backend they hold.
    """

    name: str
    model_name: str
    max_context: int
    max_new_tokens_limit: int
    # what a request that names no blend mode gets: the package default, or what the model's
    # correctness gate chose at load (engine/blend/gate.py); `blend_gate` is the gate's report
    default_blend: BlendOptions = BlendOptions()
    blend_gate: dict[str, object] | None = None
    chunk_kv: ChunkKV | None = None

    @abstractmethod
    def build_prompt(self, query: str, documents: list[str] | None, system: str | None) -> Prompt: ...

    def check_fits(self, prompt: Prompt, max_tokens: int) -> None:
        need = len(prompt) + max_tokens
        if need > self.max_context:
            raise PromptTooLong(
                f"prompt of {len(prompt)} tokens plus max_tokens {max_tokens} = {need} tokens "
                f"exceeds the model's context of {self.max_context} tokens"
            )

    @abstractmethod
    def generate(
        self,
        prompt: Prompt,
        params: SamplingParams,
        cancel: threading.Event | None = None,
        blend: BlendOptions | None = None,
        salt: str = "",
    ) -> Iterator[GenerationEvent]: ...

    def submit_job(
        self, prompt: Prompt, params: SamplingParams, blend: BlendOptions | None = None, salt: str = ""
    ) -> Job | None:
        """Hand a request to the backend's own scheduler; call from the event loop that consumes it.

        Returns a Job whose events arrive on that loop, or None when the backend has no scheduler (the
        caller then runs `generate` on its one-at-a-time queue). Raises QueueFull when full.
        """
        return None

    def submit_jobs(
        self,
        prompt: Prompt,
        params: list[SamplingParams],
        blend: BlendOptions | None = None,
        salt: str = "",
    ) -> list[Job] | None:
        """The n sequences of one request (`n` > 1), one Job each in `params` order, or None like
        `submit_job`. All or none: when one is refused, those already submitted are cancelled.

        Rule: sequence i answers as `submit_job(prompt, params[i])` alone would (the caller gives
        each its own seed). A backend that can shares one prefill (and its blended cache) among
        them; this default submits them one by one, each prefilling on its own.
        """
        jobs: list[Job] = []
        try:
            for p in params:
                job = self.submit_job(prompt, p, blend, salt)
                if job is None:
                    return None
                jobs.append(job)
        except BaseException:
            for job in jobs:
                job.cancel()
            raise
        return jobs

    def score(
        self, prompt: Prompt, blend: BlendOptions | None = None, salt: str = "", top: int = 0
    ) -> ScoredPrompt:
        """Log-probabilities of the prompt's own tokens (engine/scoring.py), `top` alternatives each;
        blocks the caller's thread. Raises ScoringUnsupported where the backend cannot (a 400)."""
        raise ScoringUnsupported(f"the {self.name} engine does not score prompts")

    def stats(self) -> EngineStats | None:
        """Queue depth, batch size and token counters, for backends that schedule requests."""
        return None

    def failure(self) -> str | None:
        """Why the backend can no longer serve (e.g. its engine process died), or None while it can."""
        return None

    def close(self) -> None:
        """Stop the backend's threads at shutdown; requests still running get their final event."""
        return None
