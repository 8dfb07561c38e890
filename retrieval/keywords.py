"""Keyword search helpers: a query's search terms, and reciprocal rank fusion of ranked lists.

A query becomes the set of its words (letters and digits, lower-cased), minus common English
function words, OR-ed together: a chunk matching any term is a candidate and BM25 ranks them (rare
terms weigh most). Stores turn the terms into their own syntax (FTS5 phrases, a Postgres tsquery).

Reciprocal rank fusion scores an item by the sum over the lists of 1 / (RRF_K + rank), ranks from
1; RRF_K = 60 is the constant of Cormack, Clarke and Buettcher (2009). It needs no score
calibration between the dense and the keyword scores, only their orders.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from typing import TypeVar

RRF_K = 60
MAX_TERMS = 64

_WORD = re.compile(r"\w+", re.UNICODE)
_FUNCTION_WORDS = (
    "a an and are as at be but by did do does for from had has have how i if in into is it its of on or "
    "that the their there these this those to was were what when where which who whom whose why will with"
)
STOPWORDS = frozenset(_FUNCTION_WORDS.split())

T = TypeVar("T", bound=Hashable)


def query_terms(query: str) -> list[str]:
    """The distinct search terms of `query`, in order of appearance (at most MAX_TERMS)."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(query.lower()):
        if word not in STOPWORDS and word.replace("_", ""):
            seen.setdefault(word, None)
    terms = list(seen)
    if not terms:  # a query of function words only still searches for them
        terms = list(dict.fromkeys(w for w in _WORD.findall(query.lower()) if w.replace("_", "")))
    return terms[:MAX_TERMS]


def fts5_query(terms: Sequence[str]) -> str:
    """An FTS5 MATCH expression: each term a quoted string, OR-ed."""
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


def reciprocal_rank_fusion(rankings: Sequence[Sequence[T]], limit: int) -> list[tuple[T, float]]:
    """The best `limit` items over all `rankings` (each best first) with their fused scores."""
    scores: dict[T, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (RRF_K + rank)
    order = sorted(scores.items(), key=lambda kv: -kv[1])  # stable: ties keep first-seen order
    return order[:limit]
