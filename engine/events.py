"""What a generation yields: text deltas as they are decoded, then one final summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

FinishReason = Literal["stop", "length", "cancelled"]


@dataclass(frozen=True)
class TokenEvent:
    text: str
    token_id: int


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


GenerationEvent = TokenEvent | FinishEvent
