"""The default utility: relevance to the query minus redundancy, from one similarity matrix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from retrieval.embedder import Embedder
from retrieval.selection.candidate import Candidate
from retrieval.selection.scorer import Combination, PreparedScorer, UtilityScorer


class EmbeddingScorer(UtilityScorer):
    """Utility of a combination from the embedder's cosine similarities, no model call per combination.

    Per query the query and the candidates are embedded once (candidates that carry a vector are not
    embedded again), giving relevances s_i = q . v_i and the chunk-chunk matrix G = V V^T. Then

        U(c_1..c_m) = sum_p w_p * (z_i * (1 - red_i) - distraction) / Z,   i = c_p

    - z_i: relevance relative to the best candidate's, max(s_i, 0) / max_j s_j, in [0, 1] (cosines
      are not comparable across queries; relative to the best they are, and unlike a min-max
      rescaling a small candidate set does not make its last candidate worthless);
    - red_i = max over earlier chunks j of clip((G_ij - overlap) / (1 - overlap), 0, 1): a chunk
      as similar as a near-duplicate of an earlier one adds (almost) nothing;
    - distraction: a constant charged per chunk, so a chunk adds to the utility only when its
      relevance net of redundancy is above it: 0.6 keeps chunks at least 60% as relevant as the
      best. More context is not always better: the embedded model answered SQuAD worse with its
      article's 10 closest paragraphs than with the top 3, and once warm caches make every
      candidate affordable this penalty, not the budget, is what stops the pick. Tuned on a
      tuning slice of questions (bench/selection.py --dev): from 0.05 to 0.6 the cache-aware
      pick shrank from 10.0 to 4.5 SQuAD paragraphs (gold recall 1.0 kept) and from 9.7 to 4.3
      MuSiQue passages (recall 0.90 -> 0.47, cold top-k 0.16); cold picks lost no recall;
    - w_p = 1 / (1 + position_decay * p): earlier positions weigh a little more, so the most
      relevant chunk leads (the order of a reranked list) and permutations do not tie;
    - Z = sum of all z_i, so U stays within about [0, 1].

    The score of a combination is that of its prefix plus the appended chunk's gain, so children of
    one tree node are scored together with one vectorised look-up.
    """

    name = "embedding"

    def __init__(
        self,
        embedder: Embedder,
        overlap: float = 0.5,
        distraction: float = 0.6,
        position_decay: float = 0.05,
    ) -> None:
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"overlap must be within [0, 1), got {overlap}")
        if distraction < 0 or position_decay < 0:
            raise ValueError("distraction and position_decay must be >= 0")
        self.embedder = embedder
        self.overlap = overlap
        self.distraction = distraction
        self.position_decay = position_decay

    def prepare(self, query: str, candidates: Sequence[Candidate]) -> PreparedSimilarity:
        q = self.embedder.embed_query(query)
        missing = [i for i, c in enumerate(candidates) if c.vector is None]
        fresh = self.embedder.embed([candidates[i].text for i in missing]) if missing else None
        vectors = np.zeros((len(candidates), q.shape[0]), dtype=np.float32)
        for i, c in enumerate(candidates):
            if c.vector is not None:
                vectors[i] = c.vector
        if fresh is not None:
            vectors[missing] = fresh
        return PreparedSimilarity(
            vectors @ q, vectors @ vectors.T, self.overlap, self.distraction, self.position_decay
        )


class PreparedSimilarity(PreparedScorer):
    """EmbeddingScorer bound to one query: relevances `rel` [n] and chunk similarities `sim` [n, n]."""

    def __init__(
        self, rel: np.ndarray, sim: np.ndarray, overlap: float, distraction: float, position_decay: float
    ) -> None:
        rel = np.clip(np.asarray(rel, dtype=np.float64), 0.0, None)
        top = float(rel.max()) if len(rel) else 0.0
        self.z = rel / top if top > 1e-9 else np.ones_like(rel)
        self.sim = np.asarray(sim, dtype=np.float64)
        self.overlap = overlap
        self.distraction = distraction
        self.position_decay = position_decay
        self.norm = max(float(self.z.sum()), 1e-9)
        self._raw: dict[Combination, float] = {(): 0.0}

    def _gains(self, prefix: Combination, added: np.ndarray) -> np.ndarray:
        """Unnormalised gain of appending each of `added` to `prefix`."""
        if prefix:
            closest = self.sim[np.ix_(added, np.asarray(prefix, dtype=np.intp))].max(axis=1)
            red = np.clip((closest - self.overlap) / (1.0 - self.overlap), 0.0, 1.0)
        else:
            red = np.zeros(len(added))
        weight = 1.0 / (1.0 + self.position_decay * len(prefix))
        return weight * (self.z[added] * (1.0 - red) - self.distraction)

    def _raw_of(self, combo: Combination) -> float:
        known = self._raw.get(combo)
        if known is None:
            prefix = combo[:-1]
            known = self._raw_of(prefix) + float(self._gains(prefix, np.array([combo[-1]]))[0])
            self._raw[combo] = known
        return known

    def score(self, combos: Sequence[Combination]) -> list[float]:
        groups: dict[Combination, list[int]] = {}
        for k, combo in enumerate(combos):
            if not combo:
                raise ValueError("an empty combination has no score")
            groups.setdefault(combo[:-1], []).append(k)
        out = [0.0] * len(combos)
        for prefix, members in groups.items():
            base = self._raw_of(prefix)
            added = np.array([combos[k][-1] for k in members])
            for k, gain in zip(members, self._gains(prefix, added), strict=True):
                raw = base + float(gain)
                self._raw[combos[k]] = raw
                out[k] = raw / self.norm
        return out
