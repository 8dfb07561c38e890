"""What a generation yields: text deltas as they are decoded, then one final summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from engine.logprobs import TokenLogprob

FinishReason = Literal["stop", "length", "cancelled"]


@dataclass(frozen=True)
class TokenEvent:
    text: str
    token_id: int
    # when asked for: the log-probabilities of the tokens produced since the previous event (text held
    # back by a stop string arrives later than its tokens)
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class FinishEvent:
    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    ttft_ms: float
    total_ms: float
    extra_usage: dict[str, int] = field(default_factory=dict)
    extra_timings: dict[str, float] = field(default_factory=dict)
    logprobs: tuple[TokenLogprob, ...] | None = None  # every produced token's, when asked for


GenerationEvent = TokenEvent | FinishEvent
