"""Prefilling a prompt of pieces by reusing their cached K/V in one of the blend modes."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from cache.entry import ChunkEntry
from engine.blend.chunk_cache import ChunkCache, context_id
from engine.blend.options import BlendOptions
from engine.blend.placement import Placement, extract_rows, place_entries
from engine.blend.precompute import ChunkKV, precompute_chunk
from engine.blend.probe import adaptive_pick, craft_factor, deviation_factor, probe_scores
from engine.blend.selection import craft_rows, deviation_selector
from engine.blend.selective import selective_prefill
from engine.kv_cache import KVCache
from engine.model import LlamaModel
from engine.prompt import Prompt


@dataclass
class PieceLookup:
    """Where a reusable piece sits in the prompt and which cached versions of it were found."""

    index: int
    start: int
    end: int
    exact_key: str
    base_key: str
    exact: ChunkKV | None = None  # computed after exactly the tokens before it here
    base: ChunkKV | None = None  # computed after the prefix piece only

    @property
    def rows(self) -> range:
        return range(self.start, self.end)


@dataclass
class BlendResult:
    kv: KVCache
    logits: torch.Tensor
    cached_tokens: int
    recomputed_tokens: int
    kv_fetch_ms: float
    prefill_ms: float
    lookups: list[PieceLookup] = field(default_factory=list)
    fresh_pieces: list[int] = field(default_factory=list)
    moved_tokens: int = 0  # cached tokens whose context changed (the ones a ratio is a share of)
    probe_ms: float = 0.0
    probe_rows: int = 0  # rows the probe ran through every layer (0 when no probe ran)
    full_layers: int = 0  # leading layers computed on every row
    prompt_tokens: int = 0
    rows: torch.Tensor | None = None  # the rows computed (uncached and recomputed), sorted

    def compute_share(self, layers: int) -> float:
        """Row-layers computed (probe, full leading layers, recomputed rows in the rest) over a full
        prefill's rows x layers: the cost of this prefill as a share of the full one, attention aside."""
        n = self.prompt_tokens
        if n == 0 or layers == 0:
            return 0.0
        rows = n - self.cached_tokens + self.recomputed_tokens
        done = self.probe_rows * layers + n * self.full_layers + rows * (layers - self.full_layers)
        return done / (n * layers)

    @property
    def ratio_used(self) -> float:
        """Recomputed share of the moved cached tokens (0 when none moved)."""
        return self.recomputed_tokens / self.moved_tokens if self.moved_tokens else 0.0


def blend_usage(result: BlendResult) -> dict[str, int]:
    """Usage counts of a blended prefill; the ratio used is recomputed / moved (server/schemas.py)."""
    return {
        "cached_tokens": result.cached_tokens,
        "recomputed_tokens": result.recomputed_tokens,
        "moved_tokens": result.moved_tokens,
    }


class Blender:
    """Runs the blend modes over a model and a chunk cache. Not thread-safe: one prefill at a time."""

    def __init__(self, model: LlamaModel, cache: ChunkCache) -> None:
        self.model = model
        self.cache = cache

    def lookup(self, prompt: Prompt, salt: str) -> list[PieceLookup]:
        """Fetch, in one batch, the exact-context and base versions of every piece but the query."""
        pieces = prompt.pieces[:-1]
        prefix_ctx = context_id(pieces[0].ids) if pieces else context_id([])
        lookups: list[PieceLookup] = []
        before: list[int] = []
        for i, (piece, (_, start, end)) in enumerate(zip(pieces, prompt.spans(), strict=False)):
            exact_key = self.cache.key(piece.ids, context_id(before), salt)
            base_key = exact_key if i <= 1 else self.cache.key(piece.ids, prefix_ctx, salt)
            lookups.append(PieceLookup(i, start, end, exact_key, base_key))
            before.extend(piece.ids)
        keys = sorted({k for lk in lookups for k in (lk.exact_key, lk.base_key)})
        found = dict(zip(keys, self.cache.get_many(keys), strict=True))
        for lk in lookups:
            exact, base = found.get(lk.exact_key), found.get(lk.base_key)
            lk.exact = self.cache.to_chunk(exact) if exact is not None else None
            lk.base = self.cache.to_chunk(base) if base is not None else None
            for chunk in (lk.exact, lk.base):
                if chunk is not None and chunk.k.shape[2] != lk.end - lk.start:
                    raise ValueError("cached chunk length does not match its piece")
        return lookups

    def prefill(self, prompt: Prompt, opts: BlendOptions, capacity: int, salt: str) -> BlendResult:
        started = time.perf_counter()
        lookups = self.lookup(prompt, salt)
        fetch_ms = (time.perf_counter() - started) * 1000
        return self.prefill_found(prompt, lookups, opts, capacity, fetch_ms)

    def prefill_found(
        self, prompt: Prompt, lookups: list[PieceLookup], opts: BlendOptions, capacity: int, fetch_ms: float
    ) -> BlendResult:
        """`prefill` with the lookups already done (a caller that first decides whether to blend)."""
        started = time.perf_counter() - fetch_ms / 1000
        ids = torch.tensor(prompt.ids)
        kv = self.model.new_cache(capacity)
        if opts.mode == "prefix":
            result = self._prefix(ids, kv, lookups)
        else:
            result = self._blend(ids, kv, lookups, opts)
        result.kv.wait_all()  # whatever reads the cache next is ordered after every upload
        result.kv_fetch_ms = fetch_ms
        result.prefill_ms = (time.perf_counter() - started) * 1000 - fetch_ms
        result.lookups = lookups
        result.prompt_tokens = len(prompt.ids)
        return result

    def _prefix(self, ids: torch.Tensor, kv: KVCache, lookups: list[PieceLookup]) -> BlendResult:
        reused = 0
        placements: list[Placement] = []
        for lk in lookups:
            if lk.exact is None:
                break
            placements.append(Placement(lk.exact.k, lk.exact.v, lk.exact.start, lk.start))
            reused = lk.end
        place_entries(kv, self.model.rope, placements)
        kv.length = reused
        logits = self.model.forward(ids[reused:], kv)
        fresh = [lk.index for lk in lookups if lk.start >= reused]
        return BlendResult(kv, logits, reused, 0, 0.0, 0.0, fresh_pieces=fresh)

    def _blend(
        self, ids: torch.Tensor, kv: KVCache, lookups: list[PieceLookup], opts: BlendOptions
    ) -> BlendResult:
        n = ids.shape[0]
        forced: list[int] = []
        candidates: list[tuple[PieceLookup, ChunkKV]] = []
        cached = 0
        placements: list[Placement] = []
        docs_start = lookups[0].end if lookups else 0
        docs_len = max(1, (lookups[-1].end if lookups else 0) - docs_start)
        for lk in lookups:
            chunk = lk.exact or lk.base
            if chunk is None:
                forced.extend(lk.rows)
                continue
            share_before = (lk.start - docs_start) / docs_len
            scale = 1.0 / opts.chunk_temperature(share_before) if lk.exact is None else 1.0
            placements.append(Placement(chunk.k, chunk.v, chunk.start, lk.start, scale))
            cached += lk.end - lk.start
            if lk.exact is None:
                candidates.append((lk, chunk))
        place_entries(kv, self.model.rope, placements)
        query_start = lookups[-1].end if lookups else 0
        forced.extend(range(query_start, n))
        forced_rows = torch.tensor(forced, dtype=torch.long)
        candidate_rows = torch.tensor([r for lk, _ in candidates for r in lk.rows], dtype=torch.long)
        probe_ms = 0.0
        probe_rows = 0
        if opts.mode == "probe" and opts.ratio > 0 and len(candidate_rows):
            t0 = time.perf_counter()
            scores = probe_scores(
                self.model, ids, kv, forced_rows, n - query_start, candidate_rows, opts.probe_from
            )
            probe_rows = len(forced_rows)
            craft = craft_factor([c for _, c in candidates], opts.craft_weight)
            if craft is not None:
                scores = scores * craft
            spans = [(lk.start, lk.end) for lk, _ in candidates]

            def choose(scores: torch.Tensor) -> torch.Tensor:
                local = adaptive_pick(
                    scores,
                    spans,
                    opts.ratio,
                    opts.min_ratio,
                    opts.error_target,
                    sink=opts.sink_tokens,
                    gamma=opts.budget_gamma,
                    width=opts.widen,
                )
                return torch.cat([forced_rows, candidate_rows[local]]).unique(sorted=True)

            full_layers = min(opts.full_layers, len(self.model.layers))
            if opts.deviation_weight > 0 and full_layers >= 2:

                def by_deviation(
                    _: int, q: Tensor, k: Tensor, v: Tensor, k_old: Tensor, v_old: Tensor
                ) -> Tensor:
                    c = candidate_rows.to(k.device)
                    dev = deviation_factor(
                        k[:, :, c], v[:, :, c], k_old[:, :, c], v_old[:, :, c], opts.deviation_weight
                    )
                    return choose(scores * dev)

                probe_ms = (time.perf_counter() - t0) * 1000
                logits, rows = selective_prefill(
                    self.model, ids, kv, None, full_layers=full_layers, selector=by_deviation
                )
            else:
                rows = choose(scores)
                probe_ms = (time.perf_counter() - t0) * 1000
                if full_layers == 0:
                    logits, rows = selective_prefill(self.model, ids, kv, rows)
                else:
                    fixed = rows
                    logits, rows = selective_prefill(
                        self.model, ids, kv, None, full_layers=full_layers, selector=lambda *_: fixed
                    )
        elif opts.mode == "cacheblend" and opts.ratio > 0 and len(candidate_rows):
            budget = math.ceil(opts.ratio * len(candidate_rows))
            query_rows = torch.arange(query_start, n)
            selector = deviation_selector(forced_rows, candidate_rows, budget, query_rows)
            full_layers = min(opts.check_layer + 1, len(self.model.layers))
            logits, rows = selective_prefill(
                self.model, ids, kv, None, full_layers=full_layers, selector=selector
            )
        else:
            rows = forced_rows
            if opts.mode == "cachecraft":
                rows = craft_rows(forced_rows, [(lk.start, c) for lk, c in candidates], opts.ratio)
            logits, rows = selective_prefill(self.model, ids, kv, rows)
        fresh = [lk.index for lk in lookups if lk.exact is None and lk.base is None]
        result = BlendResult(kv, logits, cached, len(rows) - len(forced_rows), 0.0, 0.0, fresh_pieces=fresh)
        result.moved_tokens = len(candidate_rows)
        result.probe_ms = probe_ms
        result.probe_rows = probe_rows
        result.rows = rows
        if opts.mode in ("probe", "cacheblend") and len(candidate_rows):
            result.full_layers = min(
                opts.full_layers if opts.mode == "probe" else opts.check_layer + 1, len(self.model.layers)
            )
        return result

    def write_back(self, prompt: Prompt, result: BlendResult, opts: BlendOptions, salt: str) -> None:
        """Store what this request taught the cache; runs after the answer, never before it.

        In prefix mode every piece computed here is exact for its context (a prefix-cache entry). In
        every reuse mode, pieces with no cached version at all get their base version (computed after
        the prefix piece alone, with Cache-Craft statistics) so later prompts find them.
        """
        entries: list[ChunkEntry] = []
        if opts.mode == "prefix":
            for i in result.fresh_pieces:
                lk = result.lookups[i]
                k, v = extract_rows(result.kv, lk.start, lk.end)
                entries.append(
                    self.cache.to_entry(lk.exact_key, "exact", ChunkKV(k, v, lk.start, {}), salt=salt)
                )
        missing = [lk for lk in result.lookups if lk.exact is None and lk.base is None]
        entries += self.precompute(prompt, missing, salt)
        self.cache.put_many(entries)

    def precompute(self, prompt: Prompt, missing: list[PieceLookup], salt: str) -> list[ChunkEntry]:
        """Base versions of `missing` pieces (the prefix piece first when it is among them)."""
        if not missing:
            return []
        entries: list[ChunkEntry] = []
        prefix_lookup = next((lk for lk in missing if lk.index == 0), None)
        prefix_key = self.cache.key(prompt.pieces[0].ids, context_id([]), salt)
        prefix: ChunkKV | None = None
        if prefix_lookup is None:
            found = self.cache.get_many([prefix_key])[0]
            prefix = self.cache.to_chunk(found) if found is not None else None
        others = [lk for lk in missing if lk.index != 0]
        new_prefix, chunks = self.compute_chunks(
            prompt.pieces[0].ids, prefix, [prompt.pieces[lk.index].ids for lk in others]
        )
        if new_prefix is not None:
            entries.append(self.cache.to_entry(prefix_key, context_id([]), new_prefix, salt=salt))
        ctx = context_id(prompt.pieces[0].ids)
        entries += [
            self.cache.to_entry(lk.base_key, ctx, c, salt=salt) for lk, c in zip(others, chunks, strict=True)
        ]
        return entries

    def compute_chunks(
        self,
        prefix_ids: Sequence[int],
        prefix: ChunkKV | None,
        pieces: Sequence[Sequence[int]],
        stats_len: int | None = None,
    ) -> tuple[ChunkKV | None, list[ChunkKV]]:
        """The model work of `precompute`: the prefix piece's cache when `prefix` is None (returned,
        else None), then each of `pieces` after the prefix (`stats_len`: see precompute_chunk)."""
        fresh = None
        if prefix is None:
            prefix = fresh = self.compute_prefix(prefix_ids)
        return fresh, [self.compute_piece(prefix, ids, stats_len) for ids in pieces]

    def compute_prefix(self, prefix_ids: Sequence[int]) -> ChunkKV:
        """The prefix piece's cache, after nothing."""
        return precompute_chunk(self.model, None, torch.tensor(list(prefix_ids)))

    def compute_piece(self, prefix: ChunkKV, ids: Sequence[int], stats_len: int | None) -> ChunkKV:
        """One piece's cache after `prefix`."""
        return precompute_chunk(self.model, prefix, torch.tensor(list(ids)), stats_len)
