"""Sentence splitting that never loses a character: spans tile the whole text.

pysbd finds the sentences; we only take where each one starts, so whitespace (and anything pysbd
would normalise away) stays with the sentence before it. Blank lines always end a sentence, and
sentences longer than `max_chars` are cut at whitespace so no unit is unboundedly large.
"""

from __future__ import annotations

import itertools
import re
from functools import lru_cache

import pysbd

from retrieval.spans import Span, tile

_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_WHITESPACE = re.compile(r"\s+")
# pysbd is pure-Python regex work; feeding it paragraphs of bounded size keeps its cost linear.
_PYSBD_BLOCK_CHARS = 20_000


@lru_cache(maxsize=1)
def _segmenter() -> pysbd.Segmenter:
    return pysbd.Segmenter(language="en", clean=False)


def paragraph_starts(text: str) -> list[int]:
    """Where each paragraph after the first begins (just past a blank line)."""
    return [m.end() for m in _PARAGRAPH_BREAK.finditer(text)]


def _sentence_starts(block: str, offset: int) -> list[int]:
    """Start positions of pysbd's sentences inside `block`, located in the original text."""
    starts, cursor = [], 0
    for piece in _segmenter().segment(block):
        core = piece.strip()
        if not core:
            continue
        found = block.find(core, cursor)
        if found < 0:  # pysbd altered the text; keep the boundaries we are sure of
            continue
        starts.append(offset + found)
        cursor = found + len(core)
    return starts


def _cut_long(text: str, span: Span, max_chars: int) -> list[int]:
    """Extra boundaries inside an over-long sentence, at the last whitespace before each limit."""
    cuts, start = [], span.start
    while span.end - start > max_chars:
        limit = start + max_chars
        spaces = [m.end() for m in _WHITESPACE.finditer(text, start + max_chars // 2, limit)]
        cut = spaces[-1] if spaces and spaces[-1] < limit else limit
        cuts.append(cut)
        start = cut
    return cuts


def split_sentences(text: str, max_chars: int = 2000) -> list[Span]:
    """Sentence spans covering `text` exactly: "".join(s.text(text) for s in spans) == text."""
    if not text:
        return []
    starts: list[int] = []
    edges = [0, *paragraph_starts(text), len(text)]
    for a, b in itertools.pairwise(edges):
        blocks = [a, *_cut_long(text, Span(a, b), _PYSBD_BLOCK_CHARS), b]
        for block_start, block_end in itertools.pairwise(blocks):
            starts.append(block_start)
            starts += _sentence_starts(text[block_start:block_end], block_start)
    spans = tile(starts, len(text))
    extra = [cut for s in spans if len(s) > max_chars for cut in _cut_long(text, s, max_chars)]
    if extra:
        spans = tile([s.start for s in spans] + extra, len(text))
    return _absorb_blank(text, spans)


def _absorb_blank(text: str, spans: list[Span]) -> list[Span]:
    """Whitespace-only spans join the sentence before them (or after, at the start of the text)."""
    out: list[Span] = []
    pending_start: int | None = None
    for span in spans:
        if not span.text(text).strip():
            if out:
                out[-1] = Span(out[-1].start, span.end)
            elif pending_start is None:
                pending_start = span.start
            continue
        out.append(Span(pending_start if pending_start is not None else span.start, span.end))
        pending_start = None
    if not out:  # nothing but whitespace
        return [Span(0, len(text))]
    return out
