"""Candidates from retrieval hits: their prompt pieces, token counts and whether their cache is warm."""

from __future__ import annotations

from collections.abc import Sequence

from engine.chunk_kv import ChunkKV
from engine.prompt import Prompt
from retrieval.records import RetrievedChunk
from retrieval.selection.candidate import Candidate


def document_pieces(prompt: Prompt) -> tuple[tuple[int, ...], list[tuple[int, ...]]]:
    """The prefix piece's ids and every document piece's ids of a prompt built with documents."""
    pieces = prompt.pieces
    return pieces[0].ids, [p.ids for p in pieces[1:-1]]


def candidates_from_hits(
    hits: Sequence[RetrievedChunk],
    prompt: Prompt,
    chunk_kv: ChunkKV | None,
    salt: str,
) -> list[Candidate]:
    """One candidate per hit, in order. `prompt` is the engine's prompt for the query with every
    hit's text as a document (engine.build_prompt(query, [h.text for h in hits], system)), so the
    token counts and cache keys are those of the pieces the engine will prefill. Without chunk KV
    (a backend that keeps no chunk caches: `Engine.chunk_kv` is None) every candidate is cold."""
    _, pieces = document_pieces(prompt)
    if len(pieces) != len(hits):
        raise ValueError(f"the prompt has {len(pieces)} document pieces for {len(hits)} hits")
    warm = chunk_kv.warm_flags(prompt, salt) if chunk_kv is not None else [False] * len(hits)
    return [Candidate.from_retrieved(h, ids, w) for h, ids, w in zip(hits, pieces, warm, strict=True)]


def mark_warm(
    candidates: Sequence[Candidate], prompt: Prompt, chunk_kv: ChunkKV, salt: str
) -> list[Candidate]:
    """`candidates` with their warm flags and token counts from `prompt`, built as above from their
    texts in the same order (for candidates that are not retrieval hits, as in the benchmark)."""
    _, pieces = document_pieces(prompt)
    if len(pieces) != len(candidates):
        raise ValueError(f"the prompt has {len(pieces)} document pieces for {len(candidates)} candidates")
    warm = chunk_kv.warm_flags(prompt, salt)
    return [
        Candidate(c.id, c.text, len(ids), w, ids, c.vector)
        for c, ids, w in zip(candidates, pieces, warm, strict=True)
    ]
