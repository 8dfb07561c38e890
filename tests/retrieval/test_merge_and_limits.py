"""Dynamic merging packs meta-chunks up to a target; the cap splits chunks that are too long."""

from __future__ import annotations

from retrieval.chunkers.limits import cap_spans
from retrieval.chunkers.merge import merge_spans
from retrieval.doc_tokens import tokenize_document
from retrieval.lm import ChunkingLM
from retrieval.sentences import split_sentences
from retrieval.spans import Span, tile
from tests.retrieval.conftest import NILE


def test_merge_is_greedy_and_never_empty() -> None:
    spans = tile([10, 20, 30, 40], 50)
    assert merge_spans(spans, [3, 3, 3, 9, 1], target=6) == [
        Span(0, 20),
        Span(20, 30),
        Span(30, 40),
        Span(40, 50),
    ]
    assert merge_spans(spans, [9, 1, 1, 1, 1], target=5) == [Span(0, 10), Span(10, 50)]
    assert merge_spans(spans, [1] * 5, target=100) == [Span(0, 50)]
    assert merge_spans([], [], target=5) == []


def test_cap_splits_at_sentences_then_tokens(lm: ChunkingLM) -> None:
    text = NILE + " " + "word " * 80
    tokens = tokenize_document(lm.tokenizer, text)
    sentences = split_sentences(text)
    capped = cap_spans([Span(0, len(text))], sentences, tokens, max_tokens=30)
    assert "".join(s.text(text) for s in capped) == text
    assert max(tokens.counts(capped)) <= 30
    sentence_starts = {s.start for s in sentences}
    # inside the prose every cut is a sentence boundary; only the unpunctuated tail is cut by tokens
    prose_cuts = [s.start for s in capped[1:] if s.start < len(NILE)]
    assert prose_cuts and all(c in sentence_starts for c in prose_cuts)
    short = [Span(0, 10), Span(10, len(text))]
    assert cap_spans(short, sentences, tokens, max_tokens=10_000) == short


def test_merge_stops_at_paragraph_breaks_unless_the_chunk_is_tiny() -> None:
    spans = tile([5, 20, 40, 60], 80)  # a heading [0, 5), then pieces; paragraphs start at 5 and 40
    counts = [2, 10, 10, 10, 10]
    merged = merge_spans(spans, counts, target=100, breaks={5, 40}, min_tokens=5)
    assert merged == [Span(0, 40), Span(40, 80)]  # the heading joins its paragraph; 40 is kept
    assert merge_spans(spans, counts, target=100, breaks={5, 40}) == [Span(0, 5), Span(5, 40), Span(40, 80)]


def test_factory_keeps_paragraphs_apart(lm: ChunkingLM) -> None:
    from retrieval.chunkers.factory import chunk_spans
    from retrieval.config import ChunkerConfig
    from retrieval.sentences import paragraph_starts

    sentences = split_sentences(NILE)
    tokens = tokenize_document(lm.tokenizer, NILE)
    cfg = ChunkerConfig(method="ppl", merge_target=100, max_tokens=512)  # paragraphs are ~30-40 tokens
    spans = chunk_spans(cfg, lm, NILE, sentences, tokens)
    assert [s.start for s in spans[1:]] == paragraph_starts(NILE)  # merged up to, never across, paragraphs
    loose = chunk_spans(cfg.model_copy(update={"respect_paragraphs": False}), lm, NILE, sentences, tokens)
    assert any(s.start < p < s.end for s in loose for p in paragraph_starts(NILE))
