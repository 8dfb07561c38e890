"""Utility from a cross-encoder reranker over the concatenated combination (CORAG's own reward)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from retrieval.selection.candidate import Candidate
from retrieval.selection.scorer import Combination, PreparedScorer, UtilityScorer


class CrossEncoderScorer(UtilityScorer):
    """Scores `(query, chunk texts joined in order)` with a sentence-transformers CrossEncoder.

    The model comes from a local directory, loaded once without network access. Scores go through
    a sigmoid, so they lie in [0, 1] as the search expects. Every expansion is one batched predict
    over all new children. Rerankers truncate long inputs (many at 512 tokens): pick one whose
    window covers the budget, or `max_length` cuts the tail of long combinations off unseen.
    """

    name = "cross-encoder"

    def __init__(self, model_dir: Path, max_length: int = 512, batch_size: int = 16) -> None:
        import torch
        from sentence_transformers import CrossEncoder

        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(f"{model_dir} is not a cross-encoder model directory (no config.json)")
        self.model = CrossEncoder(
            str(model_dir), device="cpu", local_files_only=True, num_labels=1, max_length=max_length
        )
        self.batch_size = batch_size
        self._activation = torch.nn.Sigmoid()
        self._lock = threading.Lock()  # the fast tokenizer must not run in two threads at once

    def predict(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        with self._lock:
            scores = self.model.predict(
                pairs,
                batch_size=self.batch_size,
                activation_fn=self._activation,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(scores, dtype=np.float64).reshape(len(pairs))

    def prepare(self, query: str, candidates: Sequence[Candidate]) -> PreparedCrossEncoder:
        return PreparedCrossEncoder(self, query, [c.text.strip() for c in candidates])


class PreparedCrossEncoder(PreparedScorer):
    def __init__(self, scorer: CrossEncoderScorer, query: str, texts: list[str]) -> None:
        self.scorer = scorer
        self.query = query
        self.texts = texts

    def score(self, combos: Sequence[Combination]) -> list[float]:
        if not combos:
            return []
        if any(not combo for combo in combos):
            raise ValueError("an empty combination has no score")
        pairs = [(self.query, "\n\n".join(self.texts[i] for i in combo)) for combo in combos]
        return [float(s) for s in self.scorer.predict(pairs)]
