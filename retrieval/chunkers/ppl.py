"""Perplexity chunking (Meta-Chunking): split after sentences the LM found unusually predictable.

Each sentence gets the mean NLL of its tokens, every token conditioned on all the text before it
(one causal pass, see token_nll). A sentence whose score is a local minimum, lower than a neighbour
by at least `theta` nats, ends a chunk: what follows it surprises the model more, so a new topic
likely starts there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from retrieval.chunkers.token_nll import token_nll
from retrieval.doc_tokens import DocumentTokens
from retrieval.lm import ChunkingLM
from retrieval.spans import Span, tile

# left context (tokens) read before a region that does not start the document
REGION_CONTEXT = 256


def sentence_scores(nll: np.ndarray, tokens: DocumentTokens, sentences: Sequence[Span]) -> np.ndarray:
    """Mean NLL per sentence. A sentence without any scored token takes its predecessor's score
    (or its successor's at the start), which can never make it a strict minimum."""
    units = tokens.unit_of_token([s.start for s in sentences])
    ok = ~np.isnan(nll)
    sums = np.bincount(units[ok], weights=nll[ok], minlength=len(sentences))
    counts = np.bincount(units[ok], minlength=len(sentences))
    scores = np.full(len(sentences), np.nan)
    np.divide(sums, counts, out=scores, where=counts > 0)
    known = np.flatnonzero(~np.isnan(scores))
    if len(known) == 0:
        return np.zeros(len(sentences))
    # forward fill, then back fill the leading gap
    fill = np.maximum.accumulate(np.where(np.isnan(scores), 0, np.arange(len(scores))))
    scores = scores[fill]
    scores[: known[0]] = scores[known[0]]
    return scores


def find_minima(scores: np.ndarray, theta: float) -> list[int]:
    """Indices i (1..n-2) of sentences that end a chunk, by the reference rule:
    a strict local minimum that is >= theta below either neighbour, or a minimum on its left side
    (>= theta below the left neighbour) that ties with its right neighbour."""
    p = np.asarray(scores, dtype=np.float64)
    if len(p) < 3:
        return []
    mid, left, right = p[1:-1], p[:-2] - p[1:-1], p[2:] - p[1:-1]
    strict = (left > 0) & (right > 0) & ((left >= theta) | (right >= theta))
    plateau = (left > 0) & (p[2:] == mid) & (left >= theta)
    return [int(i) + 1 for i in np.flatnonzero(strict | plateau)]


def _region_scores(
    lm: ChunkingLM, tokens: DocumentTokens, region: Span, sentences: Sequence[Span], context: int
) -> np.ndarray:
    """Scores of the sentences in `region`, each token conditioned on the text before it (the whole
    document up to `context` tokens for a region starting the text, else REGION_CONTEXT tokens)."""
    first, last = (int(t) for t in tokens.token_at([region.start, region.end]))
    lead = max(0, first - REGION_CONTEXT)
    scored = token_nll(lm.model, tokens.ids[lead:last], lm.bos if lead == 0 else [], context).numpy()
    nll = np.full(len(tokens), np.nan)
    nll[first:last] = scored[first - lead :]  # the lead-in is context only
    return sentence_scores(nll, tokens, sentences)


def ppl_spans(
    lm: ChunkingLM,
    text: str,
    sentences: Sequence[Span],
    tokens: DocumentTokens,
    theta: float,
    context: int,
    regions: Sequence[Span] | None = None,
    progress: Callable[[float], None] | None = None,
) -> list[Span]:
    """Chunks cut after the NLL minima found inside `regions` (default: the whole text).

    Restricting the search to regions lets the caller skip text whose chunking is already decided
    (a paragraph that merging keeps whole needs no LM pass at all).
    """
    todo = [Span(0, len(text))] if regions is None else list(regions)
    total = max(1, sum(len(r) for r in todo))
    done, cuts = 0, []
    for region in todo:
        inside = [s for s in sentences if region.start <= s.start < region.end]
        if len(inside) >= 3 and len(tokens) >= 2:
            scores = _region_scores(lm, tokens, region, inside, min(context, lm.max_context))
            cuts += [inside[i].end for i in find_minima(scores, theta)]
        done += len(region)
        if progress is not None:
            progress(done / total)
    return tile(cuts, len(text))
