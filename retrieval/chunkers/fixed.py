"""The baseline: fixed windows of tokens, each overlapping the previous one."""

from __future__ import annotations

from retrieval.doc_tokens import DocumentTokens
from retrieval.spans import Span


def fixed_spans(tokens: DocumentTokens, size: int, overlap: int) -> list[Span]:
    """Windows of `size` tokens stepping by `size - overlap`; cut where tokens' words begin.

    The first window starts at character 0 and the last ends at the end of the text, so the spans
    cover the document (with overlap > 0 they overlap by about `overlap` tokens).
    """
    if not 0 <= overlap < size:
        raise ValueError(f"need 0 <= overlap < size, got overlap={overlap}, size={size}")
    n = len(tokens)
    if n == 0:
        return [Span(0, tokens.length)] if tokens.length else []
    spans, first = [], 0
    while True:
        last = min(first + size, n)
        start = 0 if first == 0 else tokens.char_at(first)
        end = tokens.length if last == n else tokens.char_at(last)
        if end > start:
            spans.append(Span(start, end))
        if last == n:
            return spans
        first = last - overlap
