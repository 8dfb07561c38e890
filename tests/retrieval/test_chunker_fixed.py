"""Fixed token windows: sizes, overlap, and exact coverage of the text."""

from __future__ import annotations

import itertools

import pytest

from retrieval.chunkers.fixed import fixed_spans
from retrieval.doc_tokens import tokenize_document
from retrieval.lm import ChunkingLM
from retrieval.spans import Span, stitch
from tests.retrieval.conftest import NILE


def test_windows_without_overlap_join_back_exactly(lm: ChunkingLM) -> None:
    tokens = tokenize_document(lm.tokenizer, NILE)
    spans = fixed_spans(tokens, size=20, overlap=0)
    assert "".join(s.text(NILE) for s in spans) == NILE
    counts = tokens.counts(spans)
    assert all(counts <= 20) and sum(counts) == len(tokens)
    assert len(spans) == -(-len(tokens) // 20)


def test_windows_with_overlap_cover_the_text(lm: ChunkingLM) -> None:
    tokens = tokenize_document(lm.tokenizer, NILE)
    spans = fixed_spans(tokens, size=20, overlap=5)
    assert stitch(spans, NILE) == NILE
    assert spans[0].start == 0 and spans[-1].end == len(NILE)
    for a, b in itertools.pairwise(spans):
        assert b.start < a.end  # consecutive windows share text
        assert tokens.counts([Span(b.start, a.end)])[0] == 5


def test_odd_text_and_bad_arguments(lm: ChunkingLM) -> None:
    text = "  🎉🎉 日本語 \n\n" * 20
    tokens = tokenize_document(lm.tokenizer, text)
    assert "".join(s.text(text) for s in fixed_spans(tokens, 7, 0)) == text
    assert stitch(fixed_spans(tokens, 7, 3), text) == text
    with pytest.raises(ValueError):
        fixed_spans(tokens, 7, 7)
