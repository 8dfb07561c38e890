"""Per-token negative log-likelihood of a whole document under the LM, in one causal pass.

The document runs through the model in windows that append to one KV cache, so every token is
conditioned on all text before it. A document longer than `context` tokens is cut into segments
of at most `context` tokens; each later segment first re-reads the last `carry` tokens of the one
before, so no token is scored without left context.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from retrieval.lm import CausalLM

WINDOW = 512  # tokens per forward call: bounds the [window, vocab] float32 logits (~100 MB here)


def _window_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """-log softmax(logits)[target] per row, without materialising the log-softmax."""
    picked = logits.gather(1, targets[:, None])[:, 0]
    return torch.logsumexp(logits, dim=-1) - picked


def token_nll(
    model: CausalLM,
    ids: torch.Tensor,
    bos: list[int],
    context: int,
    carry: int = 256,
    window: int = WINDOW,
    progress: Callable[[float], None] | None = None,
) -> torch.Tensor:
    """NLL (nats) of every token of `ids` [n]; float32 [n].

    With `bos`, the first token is predicted from it; without, the first token has no prediction and
    gets NaN (callers skip it).
    """
    n = int(ids.shape[0])
    out = torch.full((n,), float("nan"), dtype=torch.float32)
    if n == 0:
        return out
    prefix = torch.tensor(bos, dtype=torch.long)
    context = max(context, carry + len(bos) + 2)
    scored = 0  # tokens [0, scored) have their NLL (or are the unscorable first token)
    first = True
    while scored < n:
        # a segment re-reads `carry` already scored tokens, then scores new ones up to `context`
        ctx_start = 0 if first else max(0, scored - max(carry, 1))
        head = prefix if first else prefix[:0]
        end = min(n, ctx_start + context - len(head))
        seq = torch.cat([head, ids[ctx_start:end]])
        offset = len(head) - ctx_start  # seq index of document token j is j + offset
        kv = model.new_cache(len(seq))
        # position p of `seq` predicts seq[p + 1]; we want document targets [scored or 1.., end)
        lo = scored if scored > 0 or len(head) else 1
        for w0 in range(0, len(seq), window):
            w1 = min(len(seq), w0 + window)
            logits = model.forward(seq[w0:w1], kv, all_logits=True)
            # targets t (document index) predicted in this window: positions t - 1 + offset in [w0, w1)
            t0, t1 = max(lo, w0 + 1 - offset), min(end, w1 + 1 - offset)
            if t1 > t0:
                rows = logits[t0 - 1 + offset - w0 : t1 - 1 + offset - w0]
                out[t0:t1] = _window_nll(rows, ids[t0:t1])
            del logits
            if progress is not None:
                progress(min(1.0, (ctx_start + w1 - len(head)) / n))
        scored, first = end, False
    return out
