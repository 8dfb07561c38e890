"""Request and response bodies of the native API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from engine.blend.options import DEFAULT_MODE, DEFAULT_RATIO, BlendOptions
from engine.sampling import SEED_MAX, SEED_MIN
from retrieval.selection import SelectionConfig
from server.rag_context import Citation, SelectionReport


class BlendRequest(BaseModel):
    """How cached chunk K/V are reused (see engine/blend/options.py)."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["full", "prefix", "reuse", "cacheblend", "cachecraft"] = DEFAULT_MODE
    ratio: float = Field(DEFAULT_RATIO, ge=0.0, le=1.0, description="share of cached tokens to recompute")

    def options(self) -> BlendOptions:
        return BlendOptions(mode=self.mode, ratio=self.ratio)


class GenerateRequest(BaseModel):
    """POST /generate. Size limits beyond these static ones come from the settings (see the route)."""

    model_config = ConfigDict(extra="forbid")

    query: StrictStr = Field(min_length=1, description="the question or instruction")
    documents: list[StrictStr] | None = Field(None, description="texts to answer from, each its own chunk")
    collection: StrictStr | None = Field(None, min_length=1, description="retrieve the documents from here")
    top_k: int | None = Field(None, ge=1, description="chunks to retrieve from the collection")
    selection: SelectionConfig | None = Field(
        None, description="choose among the retrieved chunks (or documents): topk or corag under a budget"
    )
    system: StrictStr | None = None
    max_tokens: int | None = Field(None, gt=0, description="new tokens at most (default from settings)")
    temperature: float = Field(0.0, ge=0.0, le=5.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = Field(None, ge=SEED_MIN, le=SEED_MAX, description="64-bit sampling seed")
    stop: StrictStr | list[StrictStr] | None = None
    stream: bool = False
    blend: BlendRequest = Field(default_factory=BlendRequest)

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
    retrieve_ms: float | None = None
    select_ms: float | None = None
    prefill_ms: float | None = None
    kv_fetch_ms: float | None = None


class GenerateResponse(BaseModel):
    text: str
    finish_reason: str
    usage: Usage
    timings: Timings
    citations: list[Citation] | None = None
    selection: SelectionReport | None = None
