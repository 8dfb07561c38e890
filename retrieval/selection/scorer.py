"""The utility interface: how good an ordered combination of chunks is for answering a query."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from retrieval.selection.candidate import Candidate

Combination = tuple[int, ...]  # indices into the candidate list, in prompt order


class PreparedScorer(ABC):
    """A scorer bound to one query and one candidate list (see UtilityScorer for the rules)."""

    @abstractmethod
    def score(self, combos: Sequence[Combination]) -> list[float]:
        """One utility per combination, in order; called once per tree expansion with all children."""


class UtilityScorer(ABC):
    """Scores ordered chunk combinations for a query; the reward of CORAG's tree search.

    Rules for implementations:

    - ``prepare`` does the per-query work once (embedding the query and the candidates, loading
      nothing per call); ``score`` is then called many times with batches of combinations and must
      be cheap relative to that work whenever the scorer is meant for the default path.
    - A combination is a non-empty tuple of distinct candidate indices in prompt order; the order
      may change the score (the prompt differs), the same combination always gets the same score.
    - Scores are finite floats, higher is better, and about within [0, 1]: the search's exploration
      constant C and cost weight lambda assume rewards on that scale.
    - Utility need not grow with more chunks: a chunk that adds nothing new or distracts may lower it.
    - Deterministic: no sampling; the same query and candidates give the same scores.
    - A prepared scorer serves one search at a time; a scorer may be prepared for many queries.
    """

    name: str = "scorer"

    @abstractmethod
    def prepare(self, query: str, candidates: Sequence[Candidate]) -> PreparedScorer:
        """Bind the scorer to `query` and `candidates`."""
