"""Scoring a given prompt: the log-probability of each of its tokens under the model, after a full
prefill or after a blended one (an evaluation measures an answer's likelihood under each blend mode).

Full prefill (no blend, or a mode that reuses nothing): one forward over the prompt with every
position's logits; token i is scored by the logits at i - 1 (the first token has no score).

Blended: the prompt is prefilled as a request would be (its cold pieces computed in reusable form
first), then the query piece, the last one, is run again over the blended context with every
position's logits. Its rows are written where the blend had put them, so the result is what decoding
after that blend would see. Tokens of the cached pieces were never predicted (their K/V came from
the store) and get no score, nor does the query's first token (the logits before it are those of a
cached row); score the text of interest as the end of the query piece.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from engine.blend.blender import Blender, blend_usage
from engine.blend.options import BlendOptions
from engine.cold_pieces import prefill_once, store_after_answer
from engine.kv_cache import KVCache
from engine.logprobs import TokenLogprob, token_logprobs
from engine.model import LlamaModel
from engine.prompt import Prompt


@dataclass(frozen=True)
class ScoredPrompt:
    """Per prompt token, its log-probabilities (None where the model made no prediction for it)."""

    logprobs: list[TokenLogprob | None]
    extra_usage: dict[str, int] = field(default_factory=dict)
    extra_timings: dict[str, float] = field(default_factory=dict)


SCORE_CHUNK = 256  # positions whose logits exist at once ([chunk, vocab] float32, not [prompt, vocab])


def _run_scored(model: LlamaModel, kv: KVCache, ids: list[int], top: int) -> list[TokenLogprob | None]:
    """Run `ids` on from `kv` in chunks, each with every position's logits; ids[i] is scored by the
    logits at i - 1 and ids[0] gets None. The result is that of one forward over all of them."""
    out: list[TokenLogprob | None] = [None]
    last: torch.Tensor | None = None
    for start in range(0, len(ids), SCORE_CHUNK):
        part = ids[start : start + SCORE_CHUNK]
        logits = model.forward(torch.tensor(part), kv, all_logits=True)
        rows, targets = (
            (logits[:-1], part[1:]) if last is None else (torch.cat([last[None], logits[:-1]]), part)
        )
        if targets:
            out += token_logprobs(rows, targets, top)
        last = logits[-1]
    return out


@torch.inference_mode()
def score_prompt(
    blender: Blender, prompt: Prompt, blend: BlendOptions | None, salt: str, top: int
) -> ScoredPrompt:
    model, ids, started = blender.model, prompt.ids, time.perf_counter()
    if blend is None or not blend.reuses:
        usage = {"cached_tokens": 0, "recomputed_tokens": 0}
        full = _run_scored(model, model.new_cache(len(ids)), ids, top)
        return ScoredPrompt(full, usage, {"prefill_ms": _ms(started)})
    result, entries = prefill_once(blender, prompt, blend, len(ids), salt)
    query = list(prompt.pieces[-1].ids)
    context = len(ids) - len(query)
    result.kv.length = context  # the query rows are rewritten, with every position's logits
    scores: list[TokenLogprob | None] = [None] * context
    scores += _run_scored(model, result.kv, query, top)
    timings = {"kv_fetch_ms": result.kv_fetch_ms, "prefill_ms": result.prefill_ms, "score_ms": _ms(started)}
    usage = blend_usage(result)
    store_after_answer(blender, prompt, result, blend, salt, entries)
    return ScoredPrompt(scores, usage, timings)


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000
