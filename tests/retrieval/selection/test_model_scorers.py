"""The model-backed scorers: the engine's LM likelihood, and the cross-encoder's wiring.

No trained cross-encoder is available offline here, so the cross-encoder test loads the packaged
MiniLM directory as a CrossEncoder (its classification head is freshly initialised): it checks the
loading, batching and pairing, not the quality of the scores.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from engine.torch_engine import TorchEngine
from retrieval.embedder import packaged_model_dir
from retrieval.selection import Candidate, CostModel, SelectionConfig, select_chunks
from retrieval.selection.cross_encoder_scorer import CrossEncoderScorer
from retrieval.selection.lm_scorer import LMLikelihoodScorer

QUERY = "Where is the Eiffel Tower?"
TEXTS = [
    "The Nile is a major north-flowing river in northeastern Africa.",
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France.",
    "Photosynthesis is how plants turn light into chemical energy.",
]
CANDS = [Candidate(f"c{i}", t, 20) for i, t in enumerate(TEXTS)]


@pytest.fixture(scope="module")
def lm_scorer(engine: TorchEngine) -> LMLikelihoodScorer:
    return LMLikelihoodScorer(engine.model, engine.prompts)


def test_lm_likelihood_prefers_the_relevant_chunk(lm_scorer: LMLikelihoodScorer) -> None:
    scores = lm_scorer.prepare(QUERY, CANDS).score([(0,), (1,), (2,)])
    assert all(0.0 < s < 1.0 for s in scores)
    assert scores[1] > max(scores[0], scores[2])


def test_lm_shared_kv_equals_a_full_pass(engine: TorchEngine, lm_scorer: LMLikelihoodScorer) -> None:
    prepared = lm_scorer.prepare(QUERY, CANDS)
    batch = prepared.score([(1, 0), (1, 2), (0,)])  # two children of (1,) share its K/V
    p = engine.prompts
    for combo, got in zip([(1, 0), (1, 2), (0,)], batch, strict=True):
        target = p.encode(" " + QUERY)
        ids = list(p.prefix(None, True).ids) + [t for i in combo for t in p.document(TEXTS[i]).ids]
        ids += list(p.encode("Question:")) + list(target)
        logits = engine.model.forward(torch.tensor(ids), engine.model.new_cache(len(ids)), all_logits=True)
        lp = torch.log_softmax(logits[-len(target) - 1 : -1], -1).gather(1, torch.tensor(target)[:, None])
        assert got == pytest.approx(math.exp(float(lp.mean())), rel=1e-4)


def test_lm_likelihood_drives_a_search(lm_scorer: LMLikelihoodScorer) -> None:
    cfg = SelectionConfig(budget=45, iterations=2, time_cap_ms=10_000)
    sel = select_chunks(QUERY, CANDS, lm_scorer, CostModel(), cfg)
    assert sel.cost <= 45 and 1 in sel.indices


@pytest.fixture(scope="module")
def cross_encoder() -> CrossEncoderScorer:
    return CrossEncoderScorer(packaged_model_dir(), max_length=256)


def test_cross_encoder_scores_joined_combinations(cross_encoder: CrossEncoderScorer) -> None:
    prepared = cross_encoder.prepare(QUERY, CANDS)
    combos = [(1,), (1, 0), (0, 1)]
    scores = prepared.score(combos)
    assert all(0.0 <= s <= 1.0 for s in scores)
    joined = [(QUERY, "\n\n".join(TEXTS[i] for i in c)) for c in combos]
    assert scores == pytest.approx(list(cross_encoder.predict(joined)))  # one batch == the pairs asked
    assert [prepared.score([c])[0] for c in combos] == pytest.approx(scores, abs=1e-5)
    sel = select_chunks(QUERY, CANDS, cross_encoder, CostModel(), SelectionConfig(budget=40, iterations=5))
    assert sel.cost <= 40 and sel.chunks


def test_cross_encoder_needs_a_model_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="cross-encoder"):
        CrossEncoderScorer(tmp_path)
