"""Question-driven selection: a probe pass scores every cached token by what the question takes from it.

The probe runs only the rows that are computed anyway (the question and any uncached piece) through
every layer against the placed chunk caches, with the exact causal mask. At each layer a cached token
j scores sum over heads and question rows of attention(q -> j) x ||v_j||: the share of the question's
attention output that token supplies. Scores are normalised per layer over the candidate tokens (so
no layer dominates by scale) and summed over layers. Stale tokens the question does not read cannot
change the answer much; tokens it reads heavily can. This is the signal ProphetKV and InfoFlow use.
"""

from __future__ import annotations

import math

import torch

from engine.blend.precompute import ChunkKV
from engine.kv_cache import KVCache
from engine.model import LlamaModel
from engine.rope import apply_rope


@torch.inference_mode()
def probe_scores(
    model: LlamaModel,
    ids: torch.Tensor,
    kv: KVCache,
    rows: torch.Tensor,
    score_rows: int,
    candidates: torch.Tensor,
    score_from: int = 0,
) -> torch.Tensor:
    """Scores [len(candidates)] from running `rows` (sorted; all uncached positions and the question)
    through all layers over `kv`, whose other rows hold placed cached K/V. The last `score_rows` rows
    (the question) are the ones whose attention counts; layers below `score_from` run but do not
    count (when it is past the last layer, the last layer counts). Writes the rows' K/V into `kv`; a recompute
    that follows overwrites them."""
    cfg = model.cfg
    n = ids.shape[0]
    heads, kv_heads = cfg.num_heads, cfg.num_kv_heads
    group = heads // kv_heads
    scale = 1.0 / math.sqrt(cfg.head_dim)
    device = model.device
    cos, sin = model.rope.lookup(rows)
    rows_cpu, rows, candidates = rows.cpu(), rows.to(device), candidates.to(device)
    r = len(rows_cpu)
    hidden = (torch.arange(n)[None, :] > rows_cpu[:, None]).to(device)  # exact causal mask for the rows
    total = torch.zeros(len(candidates), device=device)
    h = model.embed[ids.to(device)[rows]]
    score_from = min(score_from, len(model.layers) - 1)
    for i, layer in enumerate(model.layers):
        q, k, v = layer.project_qkv(h)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        kv.wait_layer(i)
        kv.k[i][:, :, rows] = k
        kv.v[i][:, :, rows] = v
        keys, values = kv.view(i, n)
        keys, values = keys[0].float(), values[0].float()  # [kv_heads, N, d], not repeated per head
        # the query heads sharing a K/V head ride as extra rows of one matmul: [kv_heads, group x R, N]
        qg = q[0].float().reshape(kv_heads, group * r, -1)
        logits = (qg @ keys.transpose(-1, -2)).mul_(scale).view(kv_heads, group, r, n)
        probs = logits.masked_fill_(hidden, float("-inf")).softmax(-1)
        out = (probs.view(kv_heads, group * r, n) @ values).view(1, heads, r, -1)
        h = layer.finish(h, out.to(h.dtype))
        if i < score_from:
            continue
        # attention received by each candidate from the question rows, weighted by its value norm
        received = probs[:, :, -score_rows:].sum(2)[:, :, candidates]  # [kv_heads, group, C]
        vnorm = values[:, candidates].norm(dim=-1)  # [kv_heads, C]
        s = (received * vnorm[:, None]).sum((0, 1))
        total += s / s.sum().clamp_min(1e-12)
    return total.cpu()  # the picking that follows is index work, on the CPU


def widen(scores: torch.Tensor, bounds: torch.Tensor, width: int) -> torch.Tensor:
    """Rank key per candidate: the highest score within `width` neighbours inside the same chunk, plus
    a small share of its own score to break ties. Top-k on it picks runs around the strong tokens
    (CacheClip's grouping), so a selected word keeps the tokens that spell it."""
    if width <= 0:
        return scores
    padded = scores.new_full((len(scores) + 2 * width,), float("-inf"))
    padded[width:-width] = scores
    windows = padded.unfold(0, 2 * width + 1, 1)  # [C, 2w+1]
    chunk_pad = bounds.new_full((len(bounds) + 2 * width,), -1)
    chunk_pad[width:-width] = bounds
    same = chunk_pad.unfold(0, 2 * width + 1, 1) == bounds[:, None]
    best = windows.masked_fill(~same, float("-inf")).amax(-1)
    return best + 1e-3 * scores


def chunk_ids(spans: list[tuple[int, int]]) -> torch.Tensor:
    """Chunk index of every candidate, candidates being the rows of `spans` in order."""
    lengths = torch.tensor([e - s for s, e in spans])
    return torch.repeat_interleave(torch.arange(len(spans)), lengths)


def pick(
    scores: torch.Tensor, spans: list[tuple[int, int]], budget: int, *, sink: int, gamma: float, width: int
) -> torch.Tensor:
    """Local indices (into the candidates) of `budget` tokens to recompute.

    Each moved chunk's first `sink` tokens come first (EPIC's LegoLink: a chunk's opening tokens
    collect attention-sink mass that is wrong once the chunk moves). The rest of the budget is split
    over chunks in proportion to relevance^gamma (relevance = the chunk's probe score; gamma 0 means
    one ranking over all chunks); inside a chunk the widened scores rank the tokens.
    """
    from engine.blend.selection import split_budget  # one-way: selection does not import the probe

    bounds = chunk_ids(spans)
    lengths = [e - s for s, e in spans]
    offsets = torch.tensor([0, *lengths]).cumsum(0)
    local = torch.arange(len(scores)) - offsets[bounds]
    is_sink = local < sink
    budget = min(budget, len(scores))
    sinks = is_sink.nonzero().flatten()
    if len(sinks) >= budget:
        return sinks[:budget]
    key = widen(scores, bounds, width).masked_fill(is_sink, float("-inf"))
    left = budget - len(sinks)
    if gamma <= 0:
        return torch.cat([sinks, key.topk(left).indices]).sort().values
    relevance = torch.zeros(len(spans)).index_add_(0, bounds, scores).clamp_min(0)
    caps = [max(0, n - sink) for n in lengths]
    shares = split_budget(left, relevance.pow(gamma).tolist(), caps)
    picked = [sinks]
    for c, share in enumerate(shares):  # one step per chunk, not per token
        if share:
            a, b = int(offsets[c]), int(offsets[c + 1])
            picked.append(a + key[a:b].topk(share).indices)
    return torch.cat(picked).sort().values


def adaptive_pick(
    scores: torch.Tensor,
    spans: list[tuple[int, int]],
    ceiling: float,
    floor: float,
    target: float,
    *,
    sink: int,
    gamma: float,
    width: int,
) -> torch.Tensor:
    """The smallest selection, on a grid of ratios from `floor` to `ceiling`, whose unselected share of
    the probe's score mass (the estimate of the error left) is at most `target`; with target 0 the
    ceiling. Easy prompts, where the question reads a few tokens, stop early; diffuse ones go on."""
    n = len(scores)
    total = float(scores.sum().clamp_min(1e-12))
    if target <= 0 or floor >= ceiling:
        return pick(scores, spans, math.ceil(ceiling * n), sink=sink, gamma=gamma, width=width)
    steps = max(1, math.ceil((ceiling - floor) / 0.025))
    for j in range(steps + 1):
        ratio = floor + (ceiling - floor) * j / steps
        chosen = pick(scores, spans, math.ceil(ratio * n), sink=sink, gamma=gamma, width=width)
        if 1.0 - float(scores[chosen].sum()) / total <= target:
            return chosen
    return chosen


def craft_factor(chunks: list[ChunkKV], weight: float) -> torch.Tensor | None:
    """Per-candidate factor (token_inter / its mean)^weight over `chunks` in order, or None when the
    weight is 0 or a chunk lacks the statistic. token_inter is the attention a token put on its
    context when cached: the tokens that leaned hardest on a context that has now changed."""
    if weight <= 0:
        return None
    parts: list[torch.Tensor] = []
    for chunk in chunks:
        inter = chunk.craft.get("token_inter")
        if not isinstance(inter, list) or len(inter) != chunk.k.shape[2]:
            return None
        parts.append(torch.tensor(inter, dtype=torch.float32))
    if not parts:
        return None
    stat = torch.cat(parts).clamp_min(0)
    return (stat / stat.mean().clamp_min(1e-12) + 1e-3).pow(weight)


def deviation_factor(
    k: torch.Tensor, v: torch.Tensor, k_old: torch.Tensor, v_old: torch.Tensor, weight: float
) -> torch.Tensor:
    """Per-candidate factor (K/V deviation / its mean)^weight from fresh and cached rows at the check
    layer ([1, heads, C, dim] each), on the CPU."""
    from engine.blend.selection import kv_deviation  # one-way: selection does not import the probe

    dev = kv_deviation(k, v, k_old, v_old).cpu()
    return (dev / dev.mean().clamp_min(1e-12) + 1e-3).pow(weight)
