"""Perplexity chunking: the NLL pass, the minima rule, and splits at minima on real text."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from retrieval.chunkers import ppl
from retrieval.chunkers.ppl import find_minima, ppl_spans, sentence_scores
from retrieval.chunkers.token_nll import token_nll
from retrieval.doc_tokens import tokenize_document
from retrieval.lm import CausalLM, ChunkingLM
from retrieval.sentences import split_sentences
from tests.retrieval.conftest import NILE


def test_find_minima_follows_the_reference_rule() -> None:
    scores = np.array([3.0, 1.0, 2.5, 2.4, 2.45, 1.0, 1.0, 3.0, 0.5, 4.0])
    assert find_minima(scores, theta=0.0) == [1, 3, 5, 8]
    # a drop of 0.05 / 0.1 around index 3 is below theta=0.5, the others are deeper
    assert find_minima(scores, theta=0.5) == [1, 5, 8]
    assert find_minima(scores, theta=3.0) == [8]
    assert find_minima(np.array([1.0, 0.5]), 0.0) == []


def test_sentence_scores_average_tokens_and_fill_gaps(lm: ChunkingLM) -> None:
    text = "Alpha beta. Gamma delta epsilon."
    tokens = tokenize_document(lm.tokenizer, text)
    sentences = split_sentences(text)
    nll = np.arange(len(tokens), dtype=np.float64)
    nll[0] = np.nan
    units = tokens.unit_of_token([s.start for s in sentences])
    got = sentence_scores(nll, tokens, sentences)
    for i in range(len(sentences)):
        values = nll[(units == i) & ~np.isnan(nll)]
        assert got[i] == pytest.approx(values.mean())


def test_windowed_and_segmented_nll_match_one_pass(lm: ChunkingLM) -> None:
    ids = tokenize_document(lm.tokenizer, NILE).ids[:120]
    logits = lm.model.forward(ids, lm.model.new_cache(len(ids)), all_logits=True)
    direct = torch.nn.functional.cross_entropy(logits[:-1], ids[1:], reduction="none")
    # windows of 32 tokens appending to one KV cache give the scores of one forward pass
    windowed = token_nll(lm.model, ids, [], context=4096, window=32)
    assert torch.isnan(windowed[0])
    torch.testing.assert_close(windowed[1:], direct, atol=5e-3, rtol=5e-3)
    # segments of 50 tokens re-reading 20: identical in the first segment, every token scored
    segmented = token_nll(lm.model, ids, [], context=50, carry=20, window=32)
    assert not torch.isnan(segmented[1:]).any()
    torch.testing.assert_close(segmented[1:50], direct[:49], atol=5e-3, rtol=5e-3)
    with_bos = token_nll(lm.model, ids[:20], lm.bos, context=4096)
    assert torch.isnan(with_bos[0]).item() == (not lm.bos)


def test_splits_after_constructed_minima(lm: ChunkingLM, monkeypatch: pytest.MonkeyPatch) -> None:
    text = "One. Two. Three. Four. Five. Six."
    tokens = tokenize_document(lm.tokenizer, text)
    sentences = split_sentences(text)
    assert len(sentences) == 6
    per_sentence = [5.0, 1.0, 4.0, 4.0, 0.5, 6.0]
    units = tokens.unit_of_token([s.start for s in sentences])
    fake = torch.tensor([per_sentence[u] for u in units], dtype=torch.float32)
    monkeypatch.setattr(ppl, "token_nll", lambda *a, **k: fake)
    spans = ppl_spans(lm, text, sentences, tokens, theta=0.0, context=1024)
    assert [s.text(text) for s in spans] == ["One. Two. ", "Three. Four. Five. ", "Six."]
    spans = ppl_spans(lm, text, sentences, tokens, theta=4.5, context=1024)
    assert [s.text(text) for s in spans] == ["One. Two. Three. Four. Five. ", "Six."]


def test_real_model_splits_after_a_predictable_repeat(lm: ChunkingLM) -> None:
    """A repeated sentence is nearly free to predict, the topic change after it is not."""
    fact = "The Nile is the longest river in Africa and flows north into the Mediterranean Sea. "
    text = (
        fact + "Many cities lie along its banks. " + fact
        + "Photosynthesis lets green plants turn sunlight into chemical energy. "
        + "Chlorophyll absorbs mostly red and blue light."
    )  # fmt: skip
    sentences = split_sentences(text)
    tokens = tokenize_document(lm.tokenizer, text)
    spans = ppl_spans(lm, text, sentences, tokens, theta=0.5, context=1024)
    assert "".join(s.text(text) for s in spans) == text
    repeat_end = text.index("Photosynthesis")
    assert repeat_end in [s.end for s in spans]


def test_lm_runs_only_on_paragraphs_that_merging_cannot_keep_whole(
    lm: ChunkingLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    from retrieval.chunkers.factory import chunk_spans
    from retrieval.config import ChunkerConfig

    short = "A short opening paragraph. It has two sentences.\n\n"
    text = short + NILE.replace("\n\n", " ")
    tokens = tokenize_document(lm.tokenizer, text)
    seen: list[int] = []
    real = ppl.token_nll

    def spy(model: CausalLM, ids: torch.Tensor, bos: list[int], context: int, **kw: Any) -> torch.Tensor:
        seen.append(len(ids))
        return real(model, ids, bos, context, **kw)

    monkeypatch.setattr(ppl, "token_nll", spy)
    cfg = ChunkerConfig(method="ppl", merge_target=40, max_tokens=64)
    spans = chunk_spans(cfg, lm, text, split_sentences(text), tokens)
    assert "".join(s.text(text) for s in spans) == text
    assert len(seen) == 1 and seen[0] == len(tokens)  # the long paragraph plus the short one as context
    assert spans[0].text(text) == short
    seen.clear()
    chunk_spans(
        cfg.model_copy(update={"merge_target": 400, "max_tokens": 512}),
        lm,
        text,
        split_sentences(text),
        tokens,
    )
    assert seen == []  # every paragraph fits: no LM pass at all
