"""The decode loop: sample, detokenize, stop, and feed the token back, one step at a time."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import torch

from engine.detokenizer import Decoder, IncrementalDetokenizer, StopMatcher
from engine.events import FinishEvent, FinishReason, GenerationEvent, TokenEvent
from engine.kv_cache import KVCache
from engine.model import LlamaModel
from engine.sampling import Sampler, SamplingParams


def decode_loop(
    model: LlamaModel,
    tokenizer: Decoder,
    eos_ids: frozenset[int],
    kv: KVCache,
    first_logits: torch.Tensor,
    params: SamplingParams,
    *,
    prompt_tokens: int,
    started: float,
    cancel: threading.Event | None = None,
    extra_usage: dict[str, int] | None = None,
    extra_timings: dict[str, float] | None = None,
) -> Iterator[GenerationEvent]:
    """Generate from a prefilled `kv` whose last-position logits are `first_logits`.

    `started` is the perf_counter time the request began, so TTFT counts the prefill too.
    """
    sampler = Sampler(params)
    detok = IncrementalDetokenizer(tokenizer)
    stops = StopMatcher(params.stop)
    logits = first_logits
    produced = 0
    ttft_ms = 0.0
    reason: FinishReason = "length"
    while True:
        if cancel is not None and cancel.is_set():
            reason = "cancelled"
            break
        token = sampler(logits)
        if produced == 0:
            ttft_ms = (time.perf_counter() - started) * 1000
        if token in eos_ids:
            reason = "stop"
            break
        produced += 1
        delta = stops.feed(detok.add(token))
        if delta:
            yield TokenEvent(delta, token)
        if stops.stopped:
            reason = "stop"
            break
        if produced >= params.max_tokens:
            break
        logits = model.forward(torch.tensor([token]), kv)
    tail = stops.flush()
    if tail:
        yield TokenEvent(tail, -1)
    yield FinishEvent(
        text=stops.text,
        finish_reason=reason,
        prompt_tokens=prompt_tokens,
        completion_tokens=produced,
        ttft_ms=ttft_ms,
        total_ms=(time.perf_counter() - started) * 1000,
        extra_usage=extra_usage or {},
        extra_timings=extra_timings or {},
    )
