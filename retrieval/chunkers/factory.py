"""Runs the chunker a collection is configured with, then merging and the size cap."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from retrieval.chunkers.fixed import fixed_spans
from retrieval.chunkers.limits import cap_spans
from retrieval.chunkers.margin import margin_spans
from retrieval.chunkers.merge import merge_spans
from retrieval.chunkers.ppl import ppl_spans
from retrieval.config import ChunkerConfig
from retrieval.doc_tokens import DocumentTokens
from retrieval.lm import ChunkingLM
from retrieval.sentences import paragraph_starts
from retrieval.spans import Span, tile


def _undecided(text: str, tokens: DocumentTokens, cfg: ChunkerConfig) -> list[Span] | None:
    """Paragraphs whose chunking the LM must decide. With merging, the pieces of a paragraph of at
    most merge_target tokens are packed back into one chunk whatever its NLL minima, so only longer
    paragraphs are scored. Without merging every split counts: None means the whole text."""
    if cfg.merge_target is None:
        return None
    paragraphs = tile(paragraph_starts(text), len(text))
    return [p for p, n in zip(paragraphs, tokens.counts(paragraphs), strict=True) if n > cfg.merge_target]


def chunk_spans(
    cfg: ChunkerConfig,
    lm: ChunkingLM,
    text: str,
    sentences: Sequence[Span],
    tokens: DocumentTokens,
    progress: Callable[[float], None] | None = None,
) -> list[Span]:
    """Chunk spans of `text`. Except for `fixed` with overlap, they tile the text exactly."""
    if cfg.method == "fixed":
        return fixed_spans(tokens, cfg.size, cfg.overlap)
    breaks = set(paragraph_starts(text)) if cfg.respect_paragraphs else set()
    if cfg.method == "sentences":
        spans = list(sentences)
    elif cfg.method == "ppl":
        regions = _undecided(text, tokens, cfg) if cfg.respect_paragraphs else None
        spans = ppl_spans(lm, text, sentences, tokens, cfg.theta, cfg.ppl_context, regions, progress)
        spans = tile([s.start for s in spans] + sorted(breaks), len(text))
    else:
        spans = margin_spans(lm, text, sentences, tokens, cfg.max_tokens, breaks, progress)
    # cap before merging so merging packs pieces of an over-long meta-chunk, not the whole of it
    spans = cap_spans(spans, sentences, tokens, cfg.max_tokens)
    if cfg.merge_target is not None:
        target = cfg.merge_target
        spans = merge_spans(spans, tokens.counts(spans), target, breaks, min_tokens=target // 4)
    return spans
