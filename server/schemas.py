"""Request and response bodies of the native API."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from engine.blend.options import DEFAULT_MODE, DEFAULT_RATIO, PROBE_TEMPERATURE, BlendOptions
from engine.sampling import SEED_MAX, SEED_MIN
from retrieval.config import RetrievalMode
from retrieval.selection import SelectionConfig
from server.bounds import MAX_TOKENS_BOUND, TOP_K_BOUND
from server.errors import ApiError
from server.rag_context import Citation, SelectionReport
from server.retrieval_schemas import FILTER_HELP, RETRIEVAL_HELP


class BlendRequest(BaseModel):
    """How cached chunk K/V are reused (see engine/blend/options.py)."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["full", "prefix", "reuse", "cacheblend", "cachecraft", "probe"] | None = Field(
        None, description=f"unset: the server's default ({DEFAULT_MODE}, or what the model's gate chose)"
    )
    ratio: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description=f"share of moved cached tokens to recompute (default {DEFAULT_RATIO})",
    )

    temperature: float | None = Field(
        None,
        ge=0.25,
        le=4.0,
        description=(
            "attention temperature on the moved cached rows that are not recomputed (default: the "
            f"mode's, {PROBE_TEMPERATURE} for probe and 1 for the others; cacheblend takes only 1)"
        ),
    )

    def options(self, default: BlendOptions | None = None) -> BlendOptions:
        """The request's options; what it leaves unset comes from `default` (the engine's). A 422
        when they do not fit together (a temperature for a mode that takes none: cacheblend)."""
        base = default if default is not None else BlendOptions()
        if self.mode is not None and self.mode != base.mode:
            base = BlendOptions(mode=self.mode)
        if self.ratio is not None:
            base = replace(base, ratio=self.ratio)
        if self.temperature is not None:
            try:
                base = replace(base, reuse_temperature=self.temperature)
            except ValueError as exc:
                raise ApiError(422, f"blend.temperature: {exc}") from None
        return base


class GenerateRequest(BaseModel):
    """POST /generate. Size limits beyond these static ones come from the settings (see the route)."""

    model_config = ConfigDict(extra="forbid")

    query: StrictStr = Field(min_length=1, description="the question or instruction")
    documents: list[StrictStr] | None = Field(None, description="texts to answer from, each its own chunk")
    collection: StrictStr | None = Field(None, min_length=1, description="retrieve the documents from here")
    top_k: int | None = Field(
        None, ge=1, le=TOP_K_BOUND, description="chunks to retrieve (at most RAGBLEND_RETRIEVAL_MAX_TOP_K)"
    )
    filter: dict[str, Any] | None = Field(None, description=FILTER_HELP)
    retrieval: RetrievalMode | None = Field(None, description=RETRIEVAL_HELP + "; default: the collection's")
    selection: SelectionConfig | None = Field(
        None, description="choose among the retrieved chunks (or documents): topk or corag under a budget"
    )
    system: StrictStr | None = None
    max_tokens: int | None = Field(
        None, gt=0, le=MAX_TOKENS_BOUND, description="new tokens at most (default and cap from settings)"
    )
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


def recompute_ratio(extra_usage: dict[str, int]) -> float | None:
    """Recomputed share of the moved cached tokens, or None when no cached token moved."""
    moved = extra_usage.get("moved_tokens", 0)
    return round(extra_usage.get("recomputed_tokens", 0) / moved, 4) if moved else None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int | None = None
    recomputed_tokens: int | None = None
    moved_tokens: int | None = Field(None, description="cached tokens whose context changed")
    recompute_ratio: float | None = Field(None, description="recomputed / moved tokens: the ratio used")


class Timings(BaseModel):
    ttft_ms: float
    total_ms: float
    retrieve_ms: float | None = None
    select_ms: float | None = None
    prefill_ms: float | None = None
    kv_fetch_ms: float | None = None
    # the vLLM backend's steps before vLLM runs: waiting for the blend thread, then lookup + blend +
    # handoff (plan_ms), of which the blend and the handoff of its K/V to vLLM
    queue_ms: float | None = None
    plan_ms: float | None = None
    blend_ms: float | None = None
    handoff_ms: float | None = None


class GenerateResponse(BaseModel):
    text: str
    finish_reason: str
    usage: Usage
    timings: Timings
    citations: list[Citation] | None = None
    selection: SelectionReport | None = None
