"""What a generation answers from: inline documents, or chunks retrieved from a collection.

Shared by /generate and the OpenAI-compatible routes. With `collection`, the query is embedded,
the top_k chunks are retrieved, and each becomes one document piece of the prompt (so its KV cache,
warmed at ingestion, is found by content), in retrieval order; the answer carries their citations.
With `selection`, the retrieved chunks (or the inline documents) are candidates, and the chosen
method (top-k under a budget, or CORAG's tree search) picks which go in and in what order, pricing
each by what it costs to prefill now: a chunk whose cache is warm costs only its recompute share.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from engine.blend.options import BlendOptions
from engine.torch_engine import TorchEngine
from retrieval.config import RetrievalMode
from retrieval.records import RetrievedChunk
from retrieval.selection import Candidate, CostModel, SelectionConfig, select_chunks
from retrieval.selection.embedding_scorer import EmbeddingScorer
from retrieval.selection.warmth import mark_warm
from server.errors import ApiError
from server.prefill_speed import prefill_speed
from server.retrieval_service import call, get_collections, retrieve_chunks
from server.services import Services


class Citation(BaseModel):
    """A chunk the answer was given: where it comes from and where it sits in its document."""

    index: int  # position among the prompt's documents, from 0
    collection: str
    doc_id: str
    document_name: str
    chunk_id: int
    seq: int
    start: int  # character offsets in the document's text
    end: int
    score: float
    metadata: dict[str, Any] = Field(default_factory=dict, description="the document's metadata")


class SelectionReport(BaseModel):
    """What chunk selection chose and what the choice cost."""

    method: str
    candidates: int
    chosen: list[int]  # positions among the candidates, in prompt order
    warm: int  # chosen chunks whose KV cache was warm
    cost: float
    budget: float
    budget_unit: str
    reward: float
    iterations: int
    stopped_by: str


@dataclass(frozen=True)
class RagContext:
    documents: list[str] | None
    citations: list[Citation] = field(default_factory=list)
    retrieve_ms: float | None = None
    select_ms: float | None = None
    selection: SelectionReport | None = None


def citations_for(hits: list[RetrievedChunk]) -> list[Citation]:
    return [
        Citation(
            index=i,
            collection=h.collection,
            doc_id=h.doc_id,
            document_name=h.doc_name,
            chunk_id=h.chunk_id,
            seq=h.seq,
            start=h.start,
            end=h.end,
            score=round(h.score, 6),
            metadata=h.metadata,
        )
        for i, h in enumerate(hits)
    ]


async def resolve_context(
    services: Services,
    query: str,
    documents: list[str] | None,
    collection: str | None,
    top_k: int | None,
    selection: SelectionConfig | None = None,
    blend: BlendOptions | None = None,
    salt: str = "",
    system: str | None = None,
    filter: dict[str, Any] | None = None,
    retrieval: RetrievalMode | None = None,
) -> RagContext:
    """The documents to answer from. `collection` and `documents` exclude each other (422); `top_k`,
    `filter` and `retrieval` need a collection (422); an unknown collection is a 404. With
    `selection`, top_k is the number of candidates retrieved (default
    RAGBLEND_RETRIEVAL_SELECTION_CANDIDATES)."""
    settings = services.settings
    if collection is None:
        for field_name, value in (("top_k", top_k), ("filter", filter), ("retrieval", retrieval)):
            if value is not None:
                raise ApiError(422, f"{field_name}: only meaningful with a collection")
        if selection is None or not documents:
            return RagContext(documents)
        texts = list(documents)
        picked, report, select_ms = await _select(services, query, texts, selection, blend, salt, system)
        return RagContext([texts[i] for i in picked], [], None, select_ms, report)
    if documents:
        raise ApiError(422, "documents: give either documents or a collection, not both")
    default_k = settings.retrieval_selection_candidates if selection else settings.retrieval_default_top_k
    k = top_k if top_k is not None else min(default_k, settings.retrieval_max_top_k)
    started = time.perf_counter()
    found = await retrieve_chunks(services, collection, query, k, salt, filter, retrieval)
    hits = [h for h in found if h.text.strip()]
    retrieve_ms = round((time.perf_counter() - started) * 1000, 3)
    if selection is None or not hits:
        return RagContext([h.text for h in hits], citations_for(hits), retrieve_ms)
    texts = [h.text for h in hits]
    picked, report, select_ms = await _select(services, query, texts, selection, blend, salt, system)
    chosen = [hits[i] for i in picked]
    return RagContext([h.text for h in chosen], citations_for(chosen), retrieve_ms, select_ms, report)


async def _select(
    services: Services,
    query: str,
    texts: list[str],
    config: SelectionConfig,
    blend: BlendOptions | None,
    salt: str,
    system: str | None,
) -> tuple[list[int], SelectionReport, float]:
    engine = services.engine
    if not isinstance(engine, TorchEngine):
        raise ApiError(503, "selection needs the loaded torch engine (its tokenizer and chunk cache)")
    manager = get_collections(services)
    opts = blend or BlendOptions()

    def run() -> tuple[list[int], SelectionReport, float]:
        started = time.perf_counter()
        prompt = engine.build_prompt(query, texts, system)
        base = [Candidate(str(i), t, 0) for i, t in enumerate(texts)]
        candidates = mark_warm(base, prompt, engine.blender.cache, salt)
        share = (opts.check_layer + 1) / engine.model_config.num_layers if opts.mode == "cacheblend" else 0.0
        speed = prefill_speed(engine) if config.budget_unit == "ms" else None
        cost_model = CostModel(
            opts.mode,
            opts.ratio,
            min(1.0, share),
            speed.tokens_per_s if speed else None,
            speed.pair_s if speed else 0.0,
            prefix_tokens=sum(len(p.ids) for p in prompt.pieces if p.kind == "prefix"),
            query_tokens=sum(len(p.ids) for p in prompt.pieces if p.kind == "query"),
        )
        scorer = EmbeddingScorer(manager.embedder("query"))
        chosen = select_chunks(query, candidates, scorer, cost_model, config)
        report = SelectionReport(
            method=chosen.method,
            candidates=len(candidates),
            chosen=list(chosen.indices),
            warm=sum(c.warm for c in chosen.chunks),
            cost=round(chosen.cost, 3),
            budget=chosen.budget,
            budget_unit=config.budget_unit,
            reward=round(chosen.reward, 6),
            iterations=chosen.iterations,
            stopped_by=chosen.stopped_by,
        )
        return list(chosen.indices), report, round((time.perf_counter() - started) * 1000, 3)

    try:
        return await call(run)
    except ValueError as exc:  # e.g. a budget in ms without a measured prefill speed
        raise ApiError(422, f"selection: {exc}") from exc
