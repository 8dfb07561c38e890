"""A hard cap on chunk size, whatever the chunker decided.

A chunk over `max_tokens` is cut at its sentence boundaries (a sentence that is itself too long is
cut into token windows), and the pieces are packed back greedily up to the cap.
"""

from __future__ import annotations

from collections.abc import Sequence

from retrieval.chunkers.merge import merge_spans
from retrieval.doc_tokens import DocumentTokens
from retrieval.spans import Span, tile


def _token_windows(span: Span, tokens: DocumentTokens, max_tokens: int) -> list[Span]:
    first, last = (int(t) for t in tokens.token_at([span.start, span.end]))
    cuts = [tokens.char_at(t) for t in range(first + max_tokens, last, max_tokens)]
    return tile(cuts, span.end, span.start)


def _pieces(span: Span, sentences: Sequence[Span], tokens: DocumentTokens, max_tokens: int) -> list[Span]:
    starts = [s.start for s in sentences]
    pieces = tile(starts, span.end, span.start)
    counts = tokens.counts(pieces)
    out: list[Span] = []
    for piece, n in zip(pieces, counts, strict=True):
        out += _token_windows(piece, tokens, max_tokens) if n > max_tokens else [piece]
    return out


def cap_spans(
    spans: Sequence[Span], sentences: Sequence[Span], tokens: DocumentTokens, max_tokens: int
) -> list[Span]:
    out: list[Span] = []
    for span, n in zip(spans, tokens.counts(spans), strict=True):
        if n <= max_tokens:
            out.append(span)
            continue
        pieces = _pieces(span, sentences, tokens, max_tokens)
        out += merge_spans(pieces, tokens.counts(pieces), max_tokens)
    return out
