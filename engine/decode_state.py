"""One sequence's decoding bookkeeping: sampling, incremental text, stop strings, EOS and limits.

Shared by the one-sequence decode loop and the batch scheduler, so a request stops, streams and reports
exactly the same way whichever of them runs it.
"""

from __future__ import annotations

import time

import torch

from engine.detokenizer import Decoder, IncrementalDetokenizer, StopMatcher
from engine.events import FinishEvent, FinishReason, GenerationEvent, TokenEvent
from engine.sampling import Sampler, SamplingParams


class DecodeState:
    """Turns sampled token ids into events; `reason` is set once the sequence must stop.

    `started` is the perf_counter time the request began, so TTFT counts queueing and prefill too.
    """

    def __init__(
        self,
        tokenizer: Decoder,
        eos_ids: frozenset[int],
        params: SamplingParams,
        *,
        prompt_tokens: int,
        started: float,
    ) -> None:
        self.params = params
        self.eos_ids = eos_ids
        self.sampler = Sampler(params)
        self.detok = IncrementalDetokenizer(tokenizer)
        self.stops = StopMatcher(params.stop)
        self.prompt_tokens = prompt_tokens
        self.started = started
        self.produced = 0
        self.ttft_ms: float | None = None
        self.reason: FinishReason | None = None
        self.extra_usage: dict[str, int] = {}
        self.extra_timings: dict[str, float] = {}

    @property
    def greedy(self) -> bool:
        return self.params.temperature == 0

    @property
    def done(self) -> bool:
        return self.reason is not None

    def sample(self, logits: torch.Tensor) -> int:
        """A token from float32 logits [vocab], with this request's own seeded generator."""
        return self.sampler(logits)

    def accept(self, token: int) -> TokenEvent | None:
        """Take the next sampled token; return the text it releases, if any. May set `reason`."""
        if self.ttft_ms is None:
            self.ttft_ms = (time.perf_counter() - self.started) * 1000
        if token in self.eos_ids:
            self.reason = "stop"
            return None
        self.produced += 1
        delta = self.stops.feed(self.detok.add(token))
        if self.stops.stopped:
            self.reason = "stop"
        elif self.produced >= self.params.max_tokens:
            self.reason = "length"
        return TokenEvent(delta, token) if delta else None

    def cancel(self) -> None:
        if self.reason is None:
            self.reason = "cancelled"

    def finish(self) -> list[GenerationEvent]:
        """The held-back tail of the text (if any), then the one final event."""
        tail = self.stops.flush()
        events: list[GenerationEvent] = [TokenEvent(tail, -1)] if tail else []
        events.append(
            FinishEvent(
                text=self.stops.text,
                finish_reason=self.reason or "length",
                prompt_tokens=self.prompt_tokens,
                completion_tokens=self.produced,
                ttft_ms=self.ttft_ms or 0.0,
                total_ms=(time.perf_counter() - self.started) * 1000,
                extra_usage=dict(self.extra_usage),
                extra_timings=dict(self.extra_timings),
            )
        )
        return events
