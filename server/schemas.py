"""Request and response bodies of the native API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictStr


class GenerateRequest(BaseModel):
    """POST /generate. Size limits beyond these static ones come from the settings (see the route)."""

    model_config = ConfigDict(extra="forbid")

    query: StrictStr = Field(min_length=1, description="the question or instruction")
    documents: list[StrictStr] | None = Field(None, description="texts to answer from, each its own chunk")
    system: StrictStr | None = None
    max_tokens: int | None = Field(None, gt=0, description="new tokens at most (default from settings)")
    temperature: float = Field(0.0, ge=0.0, le=5.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = None
    stop: StrictStr | list[StrictStr] | None = None
    stream: bool = False

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int | None = None
    recomputed_tokens: int | None = None


class Timings(BaseModel):
    ttft_ms: float
    total_ms: float
    prefill_ms: float | None = None
    kv_fetch_ms: float | None = None


class GenerateResponse(BaseModel):
    text: str
    finish_reason: str
    usage: Usage
    timings: Timings
