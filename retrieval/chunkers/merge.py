"""Dynamic merging: pack consecutive meta-chunks greedily up to a target size in tokens.

A meta-chunk is never split here, so one that alone exceeds the target stays as it is (the
max-tokens cap handles those); unlike the reference code no empty chunk is ever emitted.
Merging may be told not to cross certain positions (paragraph breaks): the author's own structure
is a stronger topic signal than any model's, so a chunk only grows past a break while it is still
smaller than `min_tokens` (a heading joins the paragraph under it).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from retrieval.spans import Span


def merge_spans(
    spans: Sequence[Span],
    counts: Sequence[int] | np.ndarray,
    target: int,
    breaks: Collection[int] = (),
    min_tokens: int = 0,
) -> list[Span]:
    """Merge adjacent spans while the merged token count stays <= `target`, not across `breaks`
    (character positions) unless the chunk so far has fewer than `min_tokens` tokens."""
    out: list[Span] = []
    size = 0
    for span, n in zip(spans, counts, strict=True):
        crossing = bool(out) and out[-1].end in breaks and size >= min_tokens
        if out and size + int(n) <= target and not crossing:
            out[-1] = Span(out[-1].start, span.end)
            size += int(n)
        else:
            out.append(span)
            size = int(n)
    return out
