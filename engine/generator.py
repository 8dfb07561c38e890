"""The one-sequence decode loop: sample, detokenize, stop, and feed the token back, one step at a time.

The batch scheduler (engine/scheduler.py) serves requests by default; this loop is the reference it is
tested against and what runs when batching is turned off.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import torch

from engine.decode_state import DecodeState
from engine.detokenizer import Decoder
from engine.events import GenerationEvent
from engine.kv_cache import KVCache
from engine.model import LlamaModel
from engine.sampling import SamplingParams


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
    state = DecodeState(tokenizer, eos_ids, params, prompt_tokens=prompt_tokens, started=started)
    state.extra_usage = dict(extra_usage or {})
    state.extra_timings = dict(extra_timings or {})
    logits = first_logits
    while True:
        if cancel is not None and cancel.is_set():
            state.cancel()
            break
        token = state.sample(logits)
        event = state.accept(token, state.logprob_of(logits, token))
        if event is not None:
            yield event
        if state.done:
            break
        logits = model.forward(torch.tensor([token]), kv)
    yield from state.finish()
