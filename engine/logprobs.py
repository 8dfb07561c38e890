"""Log-probabilities of chosen tokens and their most likely alternatives, from the logits the
sampler was given.

They are the model's own distribution at that step (log-softmax of the raw logits, before
temperature and top-p), as vLLM reports by default; with temperature 0 the chosen token is the
most likely one. One vectorised call per step for every row of a batch that asked for them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MAX_TOP_LOGPROBS = 20


@dataclass(frozen=True)
class TokenLogprob:
    """One position: the token there, its log-probability, and the `top` alternatives, best first."""

    token: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


def token_logprobs(logits: torch.Tensor, tokens: list[int], top: int) -> list[TokenLogprob]:
    """`logits` [n, vocab] (or [vocab] for one row), `tokens[i]` the token chosen at row i."""
    rows = logits.float().reshape(-1, logits.shape[-1])
    if rows.shape[0] != len(tokens):
        raise ValueError(f"{len(tokens)} tokens for {rows.shape[0]} rows of logits")
    logp = torch.log_softmax(rows, dim=-1)
    chosen = logp.gather(1, torch.tensor(tokens, dtype=torch.long)[:, None])[:, 0].tolist()
    if top <= 0:
        return [TokenLogprob(t, lp) for t, lp in zip(tokens, chosen, strict=True)]
    values, ids = logp.topk(min(top, logp.shape[-1]), dim=-1)
    tops = zip(ids.tolist(), values.tolist(), strict=True)
    return [
        TokenLogprob(t, lp, tuple(zip(i, v, strict=True)))
        for t, lp, (i, v) in zip(tokens, chosen, tops, strict=True)
    ]
