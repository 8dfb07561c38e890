"""Which pages a span of a paged document's text falls on."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence


def page_of(page_starts: Sequence[int], offset: int) -> int:
    """The 1-based page holding character `offset` (the last page starting at or before it)."""
    return max(1, bisect_right(page_starts, offset))


def page_span(page_starts: Sequence[int] | None, start: int, end: int) -> tuple[int, int] | None:
    """(first, last) 1-based page of the text span [start, end); None for a document without pages."""
    if not page_starts:
        return None
    return page_of(page_starts, start), page_of(page_starts, max(start, end - 1))
