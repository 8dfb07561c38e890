"""Margin sampling: the verified answer ids, the chat-template prompt, the adaptive decisions."""

from __future__ import annotations

import pytest

from retrieval.chunkers import margin
from retrieval.chunkers.margin import MarginScorer, answer_token_ids, margin_spans, render
from retrieval.doc_tokens import tokenize_document
from retrieval.lm import ChunkingLM
from retrieval.sentences import split_sentences
from tests.retrieval.conftest import NILE


def test_answer_ids_are_the_digits_after_the_assistant_header(lm: ChunkingLM) -> None:
    tok = lm.tokenizer
    one, two = answer_token_ids(tok)
    assert tok.decode([one]) == "1" and tok.decode([two]) == "2"
    assert one == tok.encode("1", add_special_tokens=False)[0]
    prompt = render(tok, "A cat.", "A dog.")
    template = tok.apply_chat_template(
        [{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt.endswith(template[-20:])  # the model's own template, opening the assistant's turn
    assert 'Split "A cat. A dog." into "A cat." and "A dog." two parts' in prompt


def test_margin_reuses_the_shared_prefix_exactly(lm: ChunkingLM) -> None:
    pairs = [("The cat sat.", "It purred."), ("The cat sat. It purred.", "Stocks fell.")]
    reusing = MarginScorer(lm)
    got = [reusing.margin(a, b) for a, b in pairs]
    fresh = [MarginScorer(lm).margin(a, b) for a, b in pairs]
    assert got == pytest.approx(fresh, abs=1e-4)
    assert all(-1.0 <= m <= 1.0 for m in got)


def test_adaptive_threshold_decisions(lm: ChunkingLM, monkeypatch: pytest.MonkeyPatch) -> None:
    text = "S0. S1. S2. S3. S4. S5. S6. S7."
    sentences = split_sentences(text)
    margins = iter([0.5, -0.2, 0.3, 0.1, 0.2, 0.15, 0.1])  # threshold 0 for the first 5, then mean of last 5
    monkeypatch.setattr(MarginScorer, "margin", lambda self, s1, s2: next(margins))
    spans = margin_spans(lm, text, sentences, tokenize_document(lm.tokenizer, text), max_tokens=100)
    # keep, split, keep, keep, keep (thr -> 0.18), 0.15 split (thr -> 0.11), 0.1 split
    assert [s.text(text) for s in spans] == ["S0. S1. ", "S2. S3. S4. S5. ", "S6. ", "S7."]


def test_real_margin_chunks_tile_the_text(lm: ChunkingLM, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(margin, "PROMPT_CHUNK_TOKENS", 32)
    text = NILE[: NILE.index("Chlorophyll")]
    sentences = split_sentences(text)
    spans = margin_spans(lm, text, sentences, tokenize_document(lm.tokenizer, text), max_tokens=40)
    assert "".join(s.text(text) for s in spans) == text
    assert 1 < len(spans) <= len(sentences) == 4
