"""Choosing which retrieved chunks go into a prompt: top-k, or CORAG's cost-aware tree search."""

from retrieval.selection.candidate import Candidate, Selection
from retrieval.selection.config import SelectionConfig
from retrieval.selection.cost import CostModel
from retrieval.selection.scorer import PreparedScorer, UtilityScorer
from retrieval.selection.select import select_chunks

__all__ = [
    "Candidate",
    "CostModel",
    "PreparedScorer",
    "Selection",
    "SelectionConfig",
    "UtilityScorer",
    "select_chunks",
]
