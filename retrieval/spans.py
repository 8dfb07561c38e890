"""Character spans of a document: what every chunker produces and every chunk keeps."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Span:
    """Characters [start, end) of a document's text."""

    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start

    def text(self, doc: str) -> str:
        return doc[self.start : self.end]


def tile(boundaries: Sequence[int], end: int, start: int = 0) -> list[Span]:
    """Contiguous spans covering [start, end), cut at those `boundaries` that fall strictly inside."""
    cuts = sorted({b for b in boundaries if start < b < end})
    edges = [start, *cuts, end]
    return [Span(a, b) for a, b in itertools.pairwise(edges) if b > a]


def stitch(spans: Sequence[Span], doc: str) -> str:
    """The document rebuilt from its chunks by their offsets (overlapping chunks contribute once)."""
    out, pos = [], 0
    for span in sorted(spans):
        if span.start > pos:
            raise ValueError(f"gap in chunk coverage at characters [{pos}, {span.start})")
        if span.end > pos:
            out.append(doc[pos : span.end])
            pos = span.end
    return "".join(out)
