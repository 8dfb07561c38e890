"""One sequence's decoding bookkeeping: sampling, incremental text, stop strings, EOS and limits.

Shared by the one-sequence decode loop and the batch scheduler, so a request stops, streams and reports
exactly the same way whichever of them runs it.
"""

from __future__ import annotations

import time

import torch

from engine.detokenizer import Decoder, IncrementalDetokenizer, StopMatcher
from engine.events import FinishEvent, FinishReason, GenerationEvent, TokenEvent
from engine.logprobs import TokenLogprob, token_logprobs
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
        self.logprobs: list[TokenLogprob] = []
        self._unsent = 0  # logprobs not yet carried by an event

    @property
    def greedy(self) -> bool:
        return self.params.temperature == 0

    @property
    def wants_logprobs(self) -> bool:
        return self.params.logprobs is not None

    @property
    def done(self) -> bool:
        return self.reason is not None

    def sample(self, logits: torch.Tensor) -> int:
        """A token from float32 logits [vocab], with this request's own seeded generator."""
        return self.sampler(logits)

    def logprob_of(self, logits: torch.Tensor, token: int) -> TokenLogprob | None:
        """The log-probabilities of `token` under `logits` [vocab], when this request asked for them."""
        if self.params.logprobs is None:
            return None
        return token_logprobs(logits, [token], self.params.logprobs)[0]

    def accept(self, token: int, logprob: TokenLogprob | None = None) -> TokenEvent | None:
        """Take the next sampled token (with its log-probabilities when asked for); return the text it
        releases, if any. May set `reason`. EOS ends the sequence and is not reported."""
        if self.ttft_ms is None:
            self.ttft_ms = (time.perf_counter() - self.started) * 1000
        if token in self.eos_ids and not self.params.ignore_eos:
            self.reason = "stop"
            return None
        self.produced += 1
        if logprob is not None:
            self.logprobs.append(logprob)
        delta = self.stops.feed(self.detok.add(token))
        if self.stops.stopped:
            self.reason = "stop"
        elif self.produced >= self.params.max_tokens:
            self.reason = "length"
        return TokenEvent(delta, token, self._take_unsent()) if delta else None

    def _take_unsent(self) -> tuple[TokenLogprob, ...]:
        unsent = tuple(self.logprobs[self._unsent :])
        self._unsent = len(self.logprobs)
        return unsent

    def cancel(self) -> None:
        if self.reason is None:
            self.reason = "cancelled"

    def finish(self) -> list[GenerationEvent]:
        """The held-back tail of the text (if any), then the one final event."""
        tail = self.stops.flush()
        unsent = self._take_unsent()
        events: list[GenerationEvent] = [TokenEvent(tail, -1, unsent)] if tail or unsent else []
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
                logprobs=tuple(self.logprobs) if self.wants_logprobs else None,
            )
        )
        return events
