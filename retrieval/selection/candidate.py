"""What chunk selection works on (candidates) and what it hands back (a selection)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from retrieval.records import RetrievedChunk


@dataclass(frozen=True)
class Candidate:
    """One chunk that may go into the prompt.

    `n_tokens` is what the chunk adds to the prompt (its document piece: the engine tokenizes each
    document on its own), `warm` whether a reusable KV cache of it is in the chunk store (see warmth.py).
    """

    id: str
    text: str
    n_tokens: int
    warm: bool = False
    token_ids: tuple[int, ...] = field(default=(), repr=False)
    # The chunk's unit embedding when the caller has it (a collection's index does): saves a pass.
    vector: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.n_tokens < 0:
            raise ValueError(f"candidate {self.id!r}: n_tokens must be >= 0, got {self.n_tokens}")

    @classmethod
    def from_retrieved(cls, hit: RetrievedChunk, piece_ids: tuple[int, ...], warm: bool = False) -> Candidate:
        """A retrieval hit as a candidate; `piece_ids` are its ids as a prompt document piece."""
        return cls(f"{hit.collection}/{hit.chunk_id}", hit.text, len(piece_ids), warm, piece_ids)


@dataclass(frozen=True)
class Selection:
    """The chosen chunks, in prompt order, with what the choice was worth and cost."""

    method: str
    chunks: tuple[Candidate, ...]
    indices: tuple[int, ...]  # positions of `chunks` in the candidate list
    reward: float  # the scorer's utility of the combination (0.0 for an empty one)
    cost: float  # in the budget's unit
    budget: float
    search_ms: float  # the whole selection call
    iterations: int  # search iterations run (topk: 0)
    scored: int = 0  # combinations the scorer was asked about
    prepare_ms: float = 0.0  # the scorer's per-query preparation, included in search_ms
    stopped_by: str = ""  # corag: "iterations", "time" (the cap) or "exhausted" (every node expanded)

    @property
    def tokens(self) -> int:
        return sum(c.n_tokens for c in self.chunks)
